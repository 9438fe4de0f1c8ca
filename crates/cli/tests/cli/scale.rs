//! Issue 7 at scale: an Alibaba-like system of over 2,000 services,
//! downscaled to 50 while fitting, runs live with `palette up`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Dir, Up, free_ports, palette, wait_until_up};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_downscaled_two_thousand_service_system_runs_live() {
    let _host = crate::util::host_shared();
    let dir = Dir::new();
    let ex = dir.path("ex");
    let run =
        palette(["example", "-o", s(&ex), "--traces", "10", "--alibaba-services", "2050", "--alibaba-rows", "400000"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let down = dir.write("down.yaml", "- downscale: { services: 50 }\n");
    let model = dir.path("small.json");
    let csv = ex.join("alibaba-v2022.csv");
    let run = palette(["fit", s(&csv), "--apply", s(&down), "-o", s(&model)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(": 50 services"), "{}", run.stderr);
    // The full model, for the record: over 2,000 services.
    let full = dir.path("full.json");
    let run = palette(["fit", s(&csv), "-o", s(&full)]);
    let services: usize = run.stderr.split(": ").nth(1).and_then(|t| t.split(' ').next()).unwrap().parse().unwrap();
    assert!(services >= 2000, "{}", run.stderr);

    let base = free_ports(50);
    let sys = dir.path("sys");
    let run = palette(["generate", s(&model), "-o", s(&sys), "--base-port", &base.to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut up = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["up", s(&sys)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palette up");
    let Up { shown, rest: _lines } = wait_until_up(&mut up, Duration::from_secs(60));
    assert!(shown.contains("50 services in 50 processes, all healthy"), "{shown}");
    let load = palette(["load", s(&sys), "--rate", "40", "--duration", "3s", "--warmup", "1s", "--json"]);
    let _ = Command::new("kill").args(["-TERM", &up.id().to_string()]).status();
    let status = up.wait().unwrap();
    assert_eq!(load.code, 0, "{}", load.stderr);
    let report: serde_json::Value = serde_json::from_str(&load.stdout).unwrap();
    let total = &report["total"];
    assert!(total["requests"].as_u64().unwrap() >= 100, "{total}");
    assert_eq!(total["ok"], total["requests"], "every request answered 200: {total}");
    assert_eq!(status.code(), Some(143));
}
