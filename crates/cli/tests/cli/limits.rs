//! Safe defaults: every limit of a system file is checked when it is loaded,
//! with an error naming the file, the line and the limit; oversize requests
//! and baggage are refused live; services listen on loopback unless told.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use palette_runtime::config::SystemConfig;
use palette_runtime::synthetic::chain;

use crate::util::{Dir, free_ports, palette};

/// Runs `palette serve` on `config` and expects bad data naming `needle`
/// and a line of the file.
fn refused(dir: &Dir, name: &str, config: &SystemConfig, needle: &str) {
    let file = dir.write(name, config.to_json());
    let run = palette(["serve", file.to_str().unwrap(), "--all"]);
    assert_eq!(run.code, 65, "{name}: {}", run.stderr);
    assert!(run.stderr.contains(needle), "{name}: the error names the limit `{needle}`: {}", run.stderr);
    let at = run.stderr.find(&format!("{name}:")).unwrap_or_else(|| panic!("{name}: names the file: {}", run.stderr));
    let line: String = run.stderr[at + name.len() + 1..].chars().take_while(char::is_ascii_digit).collect();
    assert!(line.parse::<u64>().is_ok_and(|l| l > 0), "{name}: names a line: {}", run.stderr);
}

fn base() -> SystemConfig {
    let b = free_ports(2);
    chain(&[b, b + 1], &[0, 0])
}

#[test]
fn every_limit_is_checked_when_the_system_is_loaded() {
    let dir = Dir::new();
    type Set = fn(&mut SystemConfig);
    let zeros: [(&str, Set); 7] = [
        ("max_in_flight", |c| c.limits.max_in_flight = 0),
        ("call_timeout_ms", |c| c.limits.call_timeout_ms = 0),
        ("max_body_bytes", |c| c.limits.max_body_bytes = 0),
        ("max_baggage_bytes", |c| c.limits.max_baggage_bytes = 0),
        ("max_fan_out", |c| c.limits.max_fan_out = 0),
        ("max_stages", |c| c.limits.max_stages = 0),
        ("max_depth", |c| c.limits.max_depth = 0),
    ];
    for (name, set) in zeros {
        let mut config = base();
        set(&mut config);
        refused(&dir, &format!("{name}.json"), &config, &format!("limits.{name} must be at least 1"));
    }

    // Fan-out: a stage calling more APIs at once than the limit allows.
    let mut config = base();
    config.model.apis[0].states[1].calls = vec![1, 1, 1];
    config.limits.max_fan_out = 2;
    refused(&dir, "fan_out.json", &config, "3 calls in one stage exceed limits.max_fan_out 2");

    // Loop iterations: a loop repeating a stage more times than the limit.
    let mut config = base();
    config.model.apis[0].states[1].repeats = vec![(50, 1)];
    config.limits.max_stages = 10;
    refused(&dir, "loop.json", &config, "a loop of 50 runs exceeds limits.max_stages 10");

    // Depth: in-process calls nest on a thread's stack, so it has a ceiling.
    let mut config = base();
    config.limits.max_depth = 513;
    refused(&dir, "depth.json", &config, "limits.max_depth 513 is over 512, the deepest call chain a service runs");
}

/// Starts `palette serve --all` and waits for its first service to listen.
fn serve(system: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["serve", system.to_str().unwrap(), "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

fn post(port: u16, headers: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /op/hop HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer before reading an oversize body, and close.
    let _ = s.write_all(body);
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn oversize_bodies_and_baggage_are_refused_live_on_loopback() {
    let dir = Dir::new();
    let port = free_ports(1);
    let mut config = chain(&[port], &[0]);
    config.limits.max_body_bytes = 1000;
    config.limits.max_baggage_bytes = 100;
    let system = dir.write("sys/system.json", config.to_json());
    let (mut child, first) = serve(&system);
    assert_eq!(first.trim_end(), format!("s01 listening on http://127.0.0.1:{port}"), "loopback by default");

    let ok = post(port, "", &[b'x'; 10]);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let big = post(port, "", &[b'x'; 5000]);
    assert!(big.starts_with("HTTP/1.1 413"), "a body over max_body_bytes gets 413: {big}");
    let baggage = format!("baggage: k={}\r\n", "v".repeat(200));
    let bag = post(port, &baggage, b"");
    assert!(bag.starts_with("HTTP/1.1 400"), "baggage over max_baggage_bytes gets 400: {bag}");
    let small = format!("baggage: k={}\r\n", "v".repeat(20));
    let fine = post(port, &small, b"");
    assert!(fine.starts_with("HTTP/1.1 200"), "baggage within the limit is served: {fine}");

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
}
