//! `palette serve`: exit codes for bad systems and flags, and a run from
//! start-up message to SIGTERM with spans on disk.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use palette_runtime::synthetic::chain;

use crate::util::{Dir, palette};

fn free_ports(n: usize) -> Vec<u16> {
    let l: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    l.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[test]
fn bad_systems_and_flags_have_their_exit_codes() {
    let dir = Dir::new();
    let system = dir.write("system.json", chain(&free_ports(2), &[0, 0]).to_json());
    let s = system.to_str().unwrap();

    let missing = palette(["serve", "nope.json", "--all"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    let neither = palette(["serve", s]);
    assert_eq!(neither.code, 2, "--service or --all is required: {}", neither.stderr);
    let unknown = palette(["serve", s, "--service", "s01,frontend"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no service `frontend`"), "{}", unknown.stderr);

    let bad = dir.write("bad.json", "{\"format\": \"palette-system/1\",\n \"name\": 3}\n");
    let run = palette(["serve", bad.to_str().unwrap(), "--all"]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("bad.json:"), "errors name the file and line: {}", run.stderr);
    let mut config = chain(&free_ports(2), &[0, 0]);
    config.services[1].port = config.services[0].port;
    let clash = dir.write("clash.json", config.to_json());
    let run = palette(["serve", clash.to_str().unwrap(), "--all"]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("is also the port of `s01`"), "{}", run.stderr);

    // A port in use is a runtime failure.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = chain(&[taken.local_addr().unwrap().port()], &[0]);
    let busy = dir.write("busy.json", config.to_json());
    let run = palette(["serve", busy.to_str().unwrap(), "--all"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot listen on"), "{}", run.stderr);
}

#[test]
fn serve_runs_until_sigterm_and_flushes_spans() {
    let dir = Dir::new();
    let ports = free_ports(3);
    let system = dir.write("sys/system.json", chain(&ports, &[0, 0, 0]).to_json());
    let mut child = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["serve", system.to_str().unwrap(), "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.len() < 4 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    for (i, port) in ports.iter().enumerate() {
        assert_eq!(lines[i], format!("s{:02} listening on http://127.0.0.1:{port}", i + 1));
    }
    let spans = dir.path("sys/spans.jsonl");
    assert_eq!(lines[3], format!("spans → {} (sample rate 1)", spans.display()));

    let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /op/hop HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("palette-server-ns: "), "{response}");

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped; 5 spans exported, 0 dropped"), "{stderr}");
    let text = std::fs::read_to_string(&spans).unwrap();
    assert_eq!(text.matches("\"spanId\"").count(), 5, "3 SERVER and 2 CLIENT spans: {text}");
}

#[test]
fn serve_answers_grpc_calls_of_a_grpc_system() {
    let dir = Dir::new();
    let ports = free_ports(2);
    let mut config = chain(&ports, &[0, 0]);
    config.rpc = palette_runtime::config::RpcMode::Grpc;
    let system = dir.write("sys/system.json", config.to_json());
    let mut child = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["serve", system.to_str().unwrap(), "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(
        first.trim_end(),
        format!("s01 listening on http://127.0.0.1:{} (gRPC palette.v1.Palette/Call, and HTTP/1.1)", ports[0])
    );
    for _ in 0..2 {
        out.read_line(&mut String::new()).unwrap();
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client =
        palette_runtime::grpc::GrpcClient::new(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(), 1 << 20);
    use palette_runtime::transport::{CallHeaders, Transport};
    let (ok, unknown) = runtime.block_on(async {
        let ok = client.call(0, "hop", CallHeaders::default(), Default::default()).await.unwrap();
        let unknown = client.call(1, "nope", CallHeaders::default(), Default::default()).await.unwrap();
        (ok, unknown)
    });
    assert_eq!((ok.status, ok.calls), (200, Some(1)), "{}", String::from_utf8_lossy(&ok.body));
    assert!(ok.server_ns.is_some());
    assert_eq!(unknown.status, 404);
    assert!(String::from_utf8_lossy(&unknown.body).contains("no operation `nope`"));
    // Health checks stay HTTP/1.1 on the same port.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    let text = std::fs::read_to_string(dir.path("sys/spans.jsonl")).unwrap();
    assert_eq!(text.matches("\"spanId\"").count(), 3, "2 SERVER and 1 CLIENT span: {text}");
    assert_eq!(text.matches("\"rpc.system\"").count(), 3, "every span of a gRPC call says so: {text}");
}
