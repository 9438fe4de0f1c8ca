//! `palette load`: exit codes for bad input, one short run against a tiny
//! HTTP server, and a load profile followed by a generated system.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Dir, Up, free_ports, palette, wait_until_up};

/// A system whose one service `web` serves root API `GET /` at `port`
/// (`roots` false: the model has no root API).
fn system_json(port: u16, roots: bool) -> String {
    let roots = if roots { r#"[{"api": 0, "count": 5}]"# } else { "[]" };
    format!(
        r#"{{
  "format": "palette-system/1", "name": "t", "seed": 1,
  "services": [{{"name": "web", "host": "web", "port": {port}, "apis": [0]}}],
  "model": {{
    "format": "palette-model/1", "kind": "palette",
    "options": {{"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20}},
    "provenance": {{"inputs": [], "traces": 5, "spans": 5}},
    "services": ["web"],
    "apis": [{{"service": "web", "operation": "GET /", "count": 5, "callers": [{{"caller": null, "count": 5}}],
              "latency": {{"n": 1, "min": 1000.0, "max": 1000.0, "bins": [[0, 1]]}}}}],
    "roots": {roots}, "edges": []
  }}
}}
"#
    )
}

/// An HTTP/1.1 server answering every request with 200 on keep-alive
/// connections, one thread per connection. Returns its port.
fn tiny_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn load_runs_against_a_server_and_prints_json() {
    let dir = Dir::new();
    let port = tiny_server();
    dir.write("sys/system.json", system_json(port, true));
    let run = palette([
        "load",
        dir.path("sys").to_str().unwrap(),
        "--rate",
        "50/s",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["total"]["requests"], 50);
    assert_eq!(v["total"]["ok"], 50);
    assert_eq!(v["apis"][0]["api"], "web GET /");
    assert_eq!(v["apis"][0]["target"], format!("127.0.0.1:{port}"));
    // The table.
    let run =
        palette(["load", dir.path("sys").to_str().unwrap(), "--rate", "20", "--duration", "500ms", "--warmup", "0s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("root api") && run.stdout.contains("web GET /"), "{}", run.stdout);
}

#[test]
fn load_bad_inputs_have_clear_errors_and_exit_codes() {
    let dir = Dir::new();
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let good = dir.write("good.json", system_json(free, true));
    let good = good.to_str().unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec![dir.path("missing.json").display().to_string()], 2, "missing.json: no such file"),
        (vec![dir.path("").display().to_string()], 2, "system.json: no such file"),
        (vec![dir.write("model.json", "{\"format\": \"palette-model/1\"}").display().to_string()], 65, "not a system"),
        (vec![dir.write("noroot.json", system_json(free, false)).display().to_string()], 65, "no root API"),
        (vec![good.into(), "--rate".into(), "0".into()], 2, "--rate must be a positive number"),
        (vec![good.into(), "--rate".into(), "-5".into()], 2, "--rate must be a positive number"),
        (vec![good.into(), "--rate".into(), "fast".into()], 2, "not a number of requests per second"),
        (vec![good.into(), "--duration".into(), "0s".into()], 2, "--duration must be longer than zero"),
        (vec![good.into(), "--speed".into(), "2".into()], 2, "--replay"),
        (vec![good.into(), "--replay".into(), dir.path("nope.csv").display().to_string()], 2, "nope.csv"),
        (vec![good.into(), "--peers".into(), "dns".into(), "--target-host".into(), "h".into()], 2, "pick one"),
        (vec![good.into(), "--duration".into(), "1s".into()], 1, "does not answer"),
        (vec![good.into(), "--profile".into(), "wobble:x=1".into()], 2, "unknown profile kind `wobble`"),
        (
            vec![good.into(), "--profile".into(), "sine:period=20s,max=9".into()],
            2,
            "sine needs min=; e.g. --profile sine:",
        ),
        (vec![good.into(), "--profile".into(), "step:rates=5,x,every=1s".into()], 2, "`x` in rates is not a rate"),
        (vec![good.into(), "--profile".into(), "learned".into()], 2, "learns from the traces given with --replay"),
        (
            vec![good.into(), "--profile".into(), "ramp:from=1,to=2".into(), "--window".into(), "1ms".into()],
            2,
            "--window",
        ),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["load".to_string()];
        all.extend(args.iter().cloned());
        let run = palette(&all);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        // Argument errors are clap's; ours are one line.
        if !args.iter().any(|a| a == "--speed") {
            assert!(run.stderr.starts_with("palette: error: "), "{args:?}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{args:?}: one line: {}", run.stderr);
        }
    }
}

#[test]
fn a_generated_system_follows_a_sine_profile_window_by_window() {
    // Timing: each window's achieved rate is held to 5% of the curve.
    let _host = crate::util::host_to_myself();
    let dir = Dir::new();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let ex = dir.path("ex");
    assert_eq!(palette(["example", "-o", &s(&ex)]).code, 0);
    let model = dir.path("m.json");
    let fit = palette(["fit", &s(&ex.join("figure1.otlp.jsonl")), "-o", &s(&model)]);
    assert_eq!(fit.code, 0, "{}", fit.stderr);
    let sys = dir.path("sys");
    let base = free_ports(3).to_string();
    let run = palette(["generate", &s(&model), "-o", &s(&sys), "--base-port", &base]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut up = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["up", &s(&sys)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palette up");
    let Up { rest: _lines, .. } = wait_until_up(&mut up, Duration::from_secs(60));
    let load = palette([
        "load",
        &s(&sys),
        "--profile",
        "sine:period=20s,min=20,max=80",
        "--duration",
        "20s",
        "--warmup",
        "2s",
        "--json",
    ]);
    let table = palette([
        "load",
        &s(&sys),
        "--profile",
        "step:rates=30,60,every=2s",
        "--duration",
        "4s",
        "--warmup",
        "0s",
        "--window",
        "2s",
    ]);
    let _ = Command::new("kill").args(["-TERM", &up.id().to_string()]).status();
    let _ = up.wait();
    assert_eq!(load.code, 0, "{}", load.stderr);
    let v: serde_json::Value = serde_json::from_str(&load.stdout).expect("JSON");
    assert_eq!(v["arrivals"], "profile");
    assert_eq!(v["profile"], "sine:period=20s,min=20,max=80");
    assert_eq!(v["timeline_step_s"], 5.0, "5 s windows by default with a profile");
    let windows = v["timeline"].as_array().unwrap();
    assert_eq!(windows.len(), 4, "{v}");
    // rate(t) = 50 − 30·cos(2πt/20): its mean over each 5 s window.
    let tau = std::f64::consts::TAU;
    let cumulative = |t: f64| 50.0 * t - 30.0 * (tau * t / 20.0).sin() * 20.0 / tau;
    for (k, w) in windows.iter().enumerate() {
        let (from, to) = (5.0 * k as f64, 5.0 * (k + 1) as f64);
        let curve = (cumulative(to) - cumulative(from)) / 5.0;
        let target = w["target_rate"].as_f64().unwrap();
        assert!((target - curve).abs() < 1e-6, "window {k}: target {target}, the curve's mean {curve}");
        // Offered: the curve's count to within one arrival.
        let offered = w["requests"].as_f64().unwrap();
        assert!((offered - curve * 5.0).abs() < 1.0, "window {k}: {offered} offered, the curve {}", curve * 5.0);
        let achieved = w["achieved_rate"].as_f64().unwrap();
        assert!((achieved / target - 1.0).abs() < 0.05, "window {k}: achieved {achieved}/s of {target}/s: {w}");
        assert_eq!(w["errors"], 0, "{w}");
    }
    let worst = v["rate_deviation"]["relative"].as_f64().expect("a worst window");
    assert!(worst.abs() < 0.05, "{v}");
    // The lower half of the curve is offered less than its upper half.
    assert!(windows[0]["requests"].as_u64() < windows[1]["requests"].as_u64());
    // The table: one row per 2 s window, target 30 then 60.
    assert_eq!(table.code, 0, "{}", table.stderr);
    let rows: Vec<&str> = table.stdout.lines().skip_while(|l| !l.trim_start().starts_with("window")).collect();
    assert!(
        rows[0].contains("target/s") && rows[0].contains("achieved/s") && rows[0].contains("p99 ms"),
        "{}",
        table.stdout
    );
    assert!(rows[1].trim_start().starts_with("0.0s") && rows[1].contains("30.0"), "{}", table.stdout);
    assert!(rows[2].trim_start().starts_with("2.0s") && rows[2].contains("60.0"), "{}", table.stdout);
    assert!(rows[3].starts_with("worst deviation of achieved from target: "), "{}", table.stdout);
}
