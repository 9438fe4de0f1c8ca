//! `palette generate` and `palette up` through the command line: what is
//! written, exit codes, and (once `palette serve` exists) a system brought
//! up, checked healthy and stopped by SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Dir, Up, free_ports, palette, skip, wait_until_up};

/// A Figure-1 model fitted from `palette example`'s traces.
fn figure1_model(dir: &Dir) -> PathBuf {
    let ex = dir.path("ex");
    let run = palette(["example".as_ref(), "-o".as_ref(), ex.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let model = dir.path("m.json");
    let run = palette(["fit".as_ref(), ex.join("figure1.otlp.jsonl").as_os_str(), "-o".as_ref(), model.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    model
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn generate_writes_a_system() {
    let dir = Dir::new();
    let model = figure1_model(&dir);
    let out = dir.path("Fig_Sys");
    let run = palette(["generate", s(&model), "-o", s(&out), "--base-port", "9300", "--work", "cpu"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "wrote {}: system `fig-sys`, 3 services (ports 9300-9302), 12 files; run it with `palette up",
            out.display()
        )),
        "{}",
        run.stdout
    );
    let system = palette_runtime::SystemConfig::load(&out.join("system.json")).expect("system.json loads");
    assert_eq!(system.name, "fig-sys");
    assert_eq!(system.work.mode, palette_runtime::config::WorkMode::Cpu);
    for f in ["compose.yaml", ".env", "Dockerfile", "README.md", "k8s/configmap.yaml", "k8s/services/b.yaml"] {
        assert!(out.join(f).is_file(), "{f} is written");
    }

    // A non-empty directory needs --force.
    let again = palette(["generate", s(&model), "-o", s(&out), "--name", "other"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("is not empty; pass --force"), "{}", again.stderr);
    let forced = palette(["generate", s(&model), "-o", s(&out), "--name", "other", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(std::fs::read_to_string(out.join(".env")).unwrap().contains("=other"));
}

#[test]
fn generate_and_up_exit_codes() {
    let dir = Dir::new();
    let model = figure1_model(&dir);
    let bad = dir.write("bad.json", "{\"format\": \"palette-model/1\"}");
    let nowhere = dir.path("nowhere");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["generate", "missing.json", "-o", "x"], 2, "missing.json: no such file"),
        (vec!["generate", s(&bad), "-o", "x"], 65, "not a palette model"),
        (vec!["generate", s(&model), "-o", "x", "--name", "No_Good"], 2, "try `no-good`"),
        (vec!["generate", s(&model), "-o", "x", "--base-port", "65534"], 2, "ports must be 1 to 65535"),
        (vec!["generate", s(&model), "-o", "x", "--otlp-endpoint", "grpc://c:4317"], 2, "is not an http:// URL"),
        (vec!["up", s(&nowhere)], 2, "no such file; write a system with `palette generate"),
        (vec!["up", s(&model)], 65, "this is a model, not a system"),
    ];
    for (args, code, message) in cases {
        let run = palette(&args);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn up_names_a_taken_port() {
    let dir = Dir::new();
    let model = figure1_model(&dir);
    let base = free_ports(3);
    let out = dir.path("sys");
    assert_eq!(palette(["generate", s(&model), "-o", s(&out), "--base-port", &base.to_string()]).code, 0);
    let _busy = TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let run = palette(["up", s(&out)]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("port {} of service `B` is taken", base + 1)),
        "names the service and port: {}",
        run.stderr
    );
    assert!(!out.join("logs").exists(), "nothing was started");
}

fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

/// The real thing: `palette up` runs `palette serve` per service (and
/// packed), every port answers /healthz, SIGTERM stops it with exit 143 and
/// frees every port.
#[test]
fn up_runs_and_stops_the_system() {
    if palette(["serve", "--help"]).code != 0 {
        skip("`palette serve` is not in this build: up is tested with the real services once it is");
        return;
    }
    let dir = Dir::new();
    let model = figure1_model(&dir);
    for packed in [false, true] {
        let base = free_ports(3);
        let out = dir.path(&format!("sys-{packed}"));
        assert_eq!(palette(["generate", s(&model), "-o", s(&out), "--base-port", &base.to_string()]).code, 0);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_palette"));
        cmd.args(["up", s(&out)]).stdout(Stdio::piped()).stderr(Stdio::piped());
        if packed {
            cmd.arg("--packed");
        }
        let mut up = cmd.spawn().expect("start palette up");
        let Up { shown, rest: _lines } = wait_until_up(&mut up, Duration::from_secs(60));
        let processes = if packed { "1 process," } else { "3 processes," };
        assert!(shown.contains(&format!("3 services in {processes} all healthy")), "{shown}");
        assert!(shown.contains(&format!("http://127.0.0.1:{}", base + 2)), "{shown}");
        assert!(shown.contains(&format!("spans: {}", out.join("spans.jsonl").display())), "{shown}");
        for p in base..base + 3 {
            assert!(healthz(p), "port {p} answers /healthz");
        }
        let kill = Command::new("sh").args(["-c", &format!("kill -TERM {}", up.id())]).status().unwrap();
        assert!(kill.success());
        let status = up.wait().unwrap();
        let mut err = String::new();
        let _ = up.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(status.code(), Some(143), "{err}");
        assert!(err.contains("SIGTERM: stopping") && err.contains("stopped (0 restarts"), "{err}");
        for p in base..base + 3 {
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "port {p} is free again");
        }
        let log = if packed { "all.log" } else { "b.log" };
        assert!(out.join("logs").join(log).is_file());
    }
}
