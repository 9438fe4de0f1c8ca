//! The supervisor, with this test binary as the supervised service (see
//! [`fake_service`]): start, health, restart after SIGKILL, stop, taken
//! ports, an unhealthy child's log tail; and the `palette serve` children
//! `up` plans for a generated system.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use palette_system::up::LocalSystem;
use palette_system::{
    ChildSpec, Endpoint, GenerateOptions, Supervisor, SupervisorError, SupervisorOptions, UpOptions, generate,
    write_dir,
};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::util::{figure1_model, free_port};

const FAKE_PORTS: &str = "PALETTE_FAKE_SERVICE_PORTS";

/// The fake service: with `PALETTE_FAKE_SERVICE_PORTS` set, this test is
/// the child process the supervisor runs — it answers every request on
/// those ports with 200 until it is killed. Without it, it checks itself:
/// it starts that child and expects `/healthz` to answer.
#[test]
fn fake_service() {
    if let Ok(ports) = std::env::var(FAKE_PORTS) {
        eprintln!("fake service on {ports}");
        let listeners: Vec<TcpListener> =
            ports.split(',').map(|p| TcpListener::bind(("127.0.0.1", p.parse::<u16>().unwrap())).unwrap()).collect();
        let threads: Vec<_> = listeners.into_iter().map(|l| std::thread::spawn(move || serve(l))).collect();
        for t in threads {
            let _ = t.join();
        }
        return;
    }
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "up::fake_service", "--nocapture", "--test-threads=1"])
        .env(FAKE_PORTS, port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !palette_system::supervise::healthy(addr) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = palette_system::supervise::healthy(addr);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok, "the fake service answers /healthz");
    assert!(!palette_system::supervise::healthy(addr), "and not once it is gone");
}

fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    }
}

fn fake(name: &str, ports: &[u16], logs: &Path) -> ChildSpec {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    ChildSpec {
        name: name.into(),
        program: std::env::current_exe().unwrap(),
        args: ["--exact", "up::fake_service", "--nocapture", "--test-threads=1"].map(Into::into).into(),
        env: vec![(FAKE_PORTS.into(), list.join(",").into())],
        cwd: None,
        log: logs.join(format!("{name}.log")),
        endpoints: ports
            .iter()
            .map(|&p| Endpoint { service: format!("{name}:{p}"), addr: SocketAddr::from(([127, 0, 0, 1], p)) })
            .collect(),
    }
}

fn quick() -> SupervisorOptions {
    SupervisorOptions {
        first_backoff: Duration::from_millis(100),
        stop_timeout: Duration::from_secs(5),
        announce: false,
        ..SupervisorOptions::default()
    }
}

fn alive(pid: u32) -> bool {
    test_kill_process(Pid::from_raw(pid as i32).unwrap()).is_ok()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restarts_a_killed_child_and_stops_all() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = vec![fake("one", &[free_port()], tmp.path()), fake("two", &[free_port(), free_port()], tmp.path())];
    let sup = Supervisor::start(specs, quick()).expect("start");
    sup.wait_healthy(Duration::from_secs(20)).expect("healthy");
    assert_eq!(sup.restarts(), 0);
    let before = sup.pids();
    let victim = before[1].1.expect("running");

    kill_process(Pid::from_raw(victim as i32).unwrap(), Signal::KILL).unwrap();
    wait_for("the restart", Duration::from_secs(10), || sup.restarts() == 1);
    sup.wait_healthy(Duration::from_secs(20)).expect("healthy again");
    let after = sup.pids();
    assert_eq!(after[0], before[0], "the other child was left alone");
    assert_ne!(after[1].1, Some(victim));
    let log = std::fs::read_to_string(tmp.path().join("two.log")).unwrap();
    assert!(log.contains("--- palette up: `two` exited (signal: 9") && log.contains("restart 1)"), "{log}");

    let pids: Vec<u32> = after.iter().filter_map(|p| p.1).collect();
    let report = sup.stop();
    assert_eq!((report.restarts, report.killed), (1, 0), "SIGTERM was enough");
    for pid in pids {
        assert!(!alive(pid), "child {pid} is gone");
    }
}

#[test]
fn a_taken_port_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let specs = vec![fake("free", &[free_port()], tmp.path()), fake("busy", &[port], tmp.path())];
    let err = Supervisor::start(specs, quick()).err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, SupervisorError::PortTaken { .. }), "{msg}");
    assert!(msg.starts_with(&format!("port {port} of service `busy:{port}` is taken")), "{msg}");
    // Nothing was started: no log files.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn an_unhealthy_child_shows_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let spec = ChildSpec {
        name: "mute".into(),
        program: "/bin/sh".into(),
        args: ["-c", "echo 'cannot read model: boom' >&2; exec sleep 30"].map(Into::into).into(),
        env: Vec::new(),
        cwd: None,
        log: tmp.path().join("logs/mute.log"),
        endpoints: vec![Endpoint { service: "M".into(), addr: SocketAddr::from(([127, 0, 0, 1], port)) }],
    };
    let sup = Supervisor::start(vec![spec], quick()).expect("start");
    let err = sup.wait_healthy(Duration::from_millis(600)).unwrap_err().to_string();
    assert!(err.starts_with("not healthy after 0.6s:"), "{err}");
    assert!(err.contains(&format!("service `M` at http://127.0.0.1:{port} did not answer /healthz")), "{err}");
    assert!(err.contains("| cannot read model: boom"), "{err}");
    // A signal while waiting ends the wait at once.
    let mut polls = 0;
    let started = Instant::now();
    let err = sup.wait_healthy_unless(Duration::from_secs(30), || {
        polls += 1;
        polls > 2
    });
    assert!(matches!(err, Err(SupervisorError::Interrupted)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = sup.pids()[0].1.unwrap();
    let report = sup.stop();
    assert_eq!(report.killed, 0);
    assert!(!alive(pid));
}

#[test]
fn a_usage_or_data_error_is_not_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = ChildSpec {
        name: "bad".into(),
        program: "/bin/sh".into(),
        args: ["-c", "echo 'system.json:3: bad port' >&2; exit 65"].map(Into::into).into(),
        env: Vec::new(),
        cwd: None,
        log: tmp.path().join("bad.log"),
        endpoints: vec![Endpoint { service: "B".into(), addr: SocketAddr::from(([127, 0, 0, 1], free_port())) }],
    };
    let sup = Supervisor::start(vec![spec], quick()).expect("start");
    let started = Instant::now();
    let err = sup.wait_healthy(Duration::from_secs(30)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "fails at once, not at the timeout");
    let msg = err.to_string();
    assert!(matches!(err, SupervisorError::Exited { .. }), "{msg}");
    assert!(msg.starts_with("`bad` exited (exit status: 65) and is not restarted"), "{msg}");
    assert!(msg.contains("| system.json:3: bad port"), "{msg}");
    assert_eq!(sup.restarts(), 0);
    assert_eq!(sup.pids(), [("bad".to_string(), None)]);
}

#[test]
fn dropping_the_supervisor_stops_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let sup = Supervisor::start(vec![fake("x", &[free_port()], tmp.path())], quick()).expect("start");
    let pid = sup.pids()[0].1.unwrap();
    drop(sup);
    assert!(!alive(pid));
}

#[test]
fn up_plans_serve_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fig");
    let g = generate(figure1_model(), &GenerateOptions { name: "fig".into(), ..Default::default() }).unwrap();
    write_dir(&dir, &g.files, false).unwrap();
    let system = LocalSystem::load(&dir).expect("load the directory");
    assert_eq!(system.path, dir.join("system.json"));
    assert_eq!(system.spans_file(), Some(dir.join("spans.jsonl")));

    let opts = UpOptions::new("/opt/palette".into());
    let children = system.children(&opts);
    let plan: Vec<(String, Vec<String>, String, Vec<u16>)> = children
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                c.log.strip_prefix(&dir).unwrap().display().to_string(),
                c.endpoints.iter().map(|e| e.addr.port()).collect(),
            )
        })
        .collect();
    let json = dir.join("system.json").display().to_string();
    let serve = |sel: &str| vec!["serve".to_string(), json.clone(), sel.to_string()];
    assert_eq!(
        plan,
        [
            ("A".to_string(), serve("--service=A"), "logs/a.log".to_string(), vec![7000]),
            ("B".to_string(), serve("--service=B"), "logs/b.log".to_string(), vec![7001]),
            ("C".to_string(), serve("--service=C"), "logs/c.log".to_string(), vec![7002]),
        ]
    );
    assert!(children.iter().all(|c| c.program == Path::new("/opt/palette") && c.cwd.as_deref() == Some(&*dir)));

    let packed = system.children(&UpOptions { packed: true, log_dir: Some("/var/log/p".into()), ..opts });
    assert_eq!(packed.len(), 1);
    assert_eq!(packed[0].args.last().unwrap(), "--all");
    assert_eq!(packed[0].log, Path::new("/var/log/p/all.log"));
    assert_eq!(packed[0].endpoints.len(), 3);

    let err = LocalSystem::load(tmp.path()).unwrap_err();
    assert!(!err.is_bad_data(), "a missing system.json is not bad data: {err}");
}

/// A replicated service is a process per instance, instance i on port + i,
/// each with its own log; packed, one process has every instance's endpoint.
#[test]
fn up_runs_a_process_per_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fig");
    let mut model = figure1_model();
    model.deploy.replicas.insert("B".into(), 2);
    let g = generate(model, &GenerateOptions { name: "fig".into(), ..Default::default() }).unwrap();
    write_dir(&dir, &g.files, false).unwrap();
    let system = LocalSystem::load(&dir).unwrap();
    let opts = UpOptions::new("/opt/palette".into());
    let children = system.children(&opts);
    let plan: Vec<(&str, String, String, Vec<u16>)> = children
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.args[2..].iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                c.log.file_name().unwrap().to_string_lossy().into_owned(),
                c.endpoints.iter().map(|e| e.addr.port()).collect(),
            )
        })
        .collect();
    assert_eq!(
        plan,
        [
            ("A", "--service=A".to_string(), "a.log".to_string(), vec![7000]),
            ("B (instance 0)", "--service=B --instance=0".to_string(), "b-0.log".to_string(), vec![7001]),
            ("B (instance 1)", "--service=B --instance=1".to_string(), "b-1.log".to_string(), vec![7002]),
            ("C", "--service=C".to_string(), "c.log".to_string(), vec![7003]),
        ]
    );
    let packed = system.children(&UpOptions { packed: true, ..opts });
    let ports: Vec<u16> = packed[0].endpoints.iter().map(|e| e.addr.port()).collect();
    assert_eq!(ports, [7000, 7001, 7002, 7003]);
}
