//! Signals and failures of the main job: `palette run`, `demo` and `up`
//! stop everything they started — on SIGINT and SIGTERM with exit 130/143
//! and span files that still parse, and when killed with SIGKILL too — and
//! a run that fails before measuring anything leaves nothing behind.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, children, cmdline, free_ports, host_to_myself, palette};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        all.push(p);
    }
    all
}

/// Whether `pid` is a live process (a zombie has already exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
}

/// Every `.jsonl` file under `dir`, each line of which must parse as JSON;
/// returns the files and their lines.
fn span_lines(dir: &Path) -> (usize, usize) {
    let (mut files, mut lines) = (0, 0);
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(line).is_ok(),
                        "{}:{}: not JSON: {line:.200}",
                        path.display(),
                        i + 1
                    );
                    lines += 1;
                }
            }
        }
    }
    report(&format!("{lines} span lines in {files} files under {}, each one JSON", dir.display()));
    (files, lines)
}

/// Waits for `child` to exit within `within`; its exit code.
fn exits_within(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("still running {within:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn proc_available() -> bool {
    if Path::new("/proc/self/task").exists() {
        return true;
    }
    crate::util::skip("no /proc: cannot see the processes a run starts");
    false
}

/// Starts `palette ARGS` with its stderr in `log`, waits until its
/// services run and at least `after` has passed, sends `signal`, and
/// checks within 5 s: the exit code, no process of it alive, no port of
/// `ports` listening, every span line parses. Returns its stderr.
fn interrupt(
    args: &[&str],
    ports: std::ops::Range<u16>,
    log: &Path,
    after: Duration,
    signal: &str,
    code: i32,
) -> String {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start palette");
    let serving = loop {
        let serving: Vec<u32> =
            descendants(child.id()).into_iter().filter(|&p| cmdline(p).contains(" serve ")).collect();
        if !serving.is_empty() && started.elapsed() >= after {
            break serving;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ended before its services ran ({status}): {}", std::fs::read_to_string(log).unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "its services never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    let everything = descendants(child.id());
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let at = Instant::now();
    let exit = exits_within(&mut child, Duration::from_secs(5));
    let stderr = std::fs::read_to_string(log).unwrap();
    assert_eq!(exit, Some(code), "{stderr}");
    let left: Vec<u32> = everything.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "still running after {:?}: {left:?} of {serving:?}\n{stderr}", at.elapsed());
    let open: Vec<u16> = ports.clone().filter(|&p| listening(p)).collect();
    assert!(open.is_empty(), "ports still listening: {open:?}\n{stderr}");
    assert!(stderr.contains(&format!("interrupted ({signal})")), "{stderr}");
    report(&format!(
        "palette {} {signal}: exit {code} {:.2} s after it; {} processes ended; none of ports {}-{} listening",
        args[0],
        at.elapsed().as_secs_f64(),
        everything.len(),
        ports.start,
        ports.end - 1
    ));
    stderr
}

/// A line for the test log (what the acceptance asks to quote).
fn report(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("signals: {line}\n").as_bytes());
}

/// Ctrl-C in the middle of a run's load: the systems stop, the run's
/// spans and load report so far are kept (and say so), exit 130.
#[test]
fn sigint_stops_a_run_and_keeps_what_it_measured() {
    let _host = host_to_myself();
    if !proc_available() {
        return;
    }
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "400"]).code, 0);
    let out = dir.path("run");
    let base = free_ports(24);
    let base_port = base.to_string();
    let input = dir.path("ex/webshop.otlp.jsonl");
    let stderr = interrupt(
        &["run", s(&input), "-o", s(&out), "--rate", "20", "--duration", "30s", "--base-port", &base_port],
        base..base + 24,
        &dir.path("run.log"),
        Duration::from_secs(10),
        "SIGINT",
        130,
    );
    assert!(
        stderr.contains(&format!("kept {}", out.display())) && stderr.contains("no report was written"),
        "{stderr}"
    );
    assert!(out.join("load-palette-1.json").exists() && !out.join("report").exists(), "{stderr}");
    let (files, lines) = span_lines(&out);
    assert!(files >= 2 && lines > 0, "the interrupted run's spans are kept: {files} files, {lines} lines");
}

/// SIGTERM (what `kill` and service managers send) does the same, exit 143.
#[test]
fn sigterm_stops_a_run_with_exit_143() {
    let _host = host_to_myself();
    if !proc_available() {
        return;
    }
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "400"]).code, 0);
    let out = dir.path("run");
    let base = free_ports(24);
    let base_port = base.to_string();
    let input = dir.path("ex/webshop.otlp.jsonl");
    interrupt(
        &["run", s(&input), "-o", s(&out), "--duration", "30s", "--base-port", &base_port, "--packed"],
        base..base + 24,
        &dir.path("run.log"),
        Duration::from_secs(4),
        "SIGTERM",
        143,
    );
    span_lines(&out);
}

/// The demo runs the same pipeline: Ctrl-C stops it the same way.
#[test]
fn sigint_stops_the_demo() {
    let _host = host_to_myself();
    if !proc_available() {
        return;
    }
    let dir = Dir::new();
    let out = dir.path("demo");
    let base = free_ports(24);
    let base_port = base.to_string();
    interrupt(
        &["demo", "-o", s(&out), "--traces", "300", "--duration", "20s", "--base-port", &base_port],
        base..base + 24,
        &dir.path("demo.log"),
        Duration::from_secs(10),
        "SIGINT",
        130,
    );
    span_lines(&out);
}

/// SIGKILL cannot be caught: the services end anyway, because each asked
/// the kernel to signal it when its supervisor dies.
#[test]
fn sigkill_of_up_leaves_no_service_running() {
    let _host = host_to_myself();
    if !proc_available() {
        return;
    }
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "200"]).code, 0);
    let model = dir.path("m.json");
    assert_eq!(palette(["fit", s(&dir.path("ex/webshop.otlp.jsonl")), "-o", s(&model)]).code, 0);
    let system = dir.path("sys");
    let base = free_ports(24);
    let generated = palette(["generate", s(&model), "-o", s(&system), "--base-port", &base.to_string()]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let mut up = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["up", s(&system)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _up = crate::util::wait_until_up(&mut up, Duration::from_secs(60));
    let services = descendants(up.id());
    assert!(services.len() >= 20, "one process per service: {services:?}");
    assert!(listening(base));
    up.kill().unwrap();
    up.wait().unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(2);
    loop {
        let left: Vec<u32> = services.iter().copied().filter(|&p| alive(p)).collect();
        let open: Vec<u16> = (base..base + 24).filter(|&p| listening(p)).collect();
        if left.is_empty() && open.is_empty() {
            report(&format!(
                "palette up SIGKILL: its {} services gone and ports {base}-{} closed {:.2} s after",
                services.len(),
                base + 23,
                killed.elapsed().as_secs_f64()
            ));
            break;
        }
        assert!(Instant::now() < deadline, "2 s after SIGKILL: running {left:?}, listening {open:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run whose system cannot start (a port is taken) measured nothing: it
/// removes the directory it made, so the corrected command simply works,
/// and names the flag of the command the user ran.
#[test]
fn a_run_that_fails_before_measuring_leaves_nothing() {
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "100"]).code, 0);
    let base = free_ports(24);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", base + 3)).unwrap();
    let out = dir.path("run");
    let run = palette([
        "run",
        s(&dir.path("ex/webshop.otlp.jsonl")),
        "-o",
        s(&out),
        "--kind",
        "palette",
        "--duration",
        "2s",
        "--base-port",
        &base.to_string(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("pass another --base-port to `palette run`"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("removed {} (nothing was measured)", out.display())), "{}", run.stderr);
    assert!(!out.exists(), "the half-written run directory is gone");
}
