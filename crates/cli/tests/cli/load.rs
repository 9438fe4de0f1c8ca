//! `palette load`: exit codes for bad input, and one short run against a
//! tiny HTTP server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use crate::util::{Dir, palette};

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
