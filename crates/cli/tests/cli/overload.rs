//! Issue 8's overload check, as a user would run it: `palette up` a small
//! generated system, measure its capacity C with `palette load`, offer 2×C
//! for 60 s, and check that no service exits, memory stays bounded, the
//! excess gets 503 with error spans, and latency recovers afterwards.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palette_runtime::synthetic::chain;

use crate::util::{Dir, free_ports, palette, skip, wait_until_up};

/// Leaf work per request: with `IN_FLIGHT` requests at once, the system's
/// capacity is about IN_FLIGHT / WORK — 100 requests/s.
const WORK_MS: u64 = 40;
const IN_FLIGHT: u32 = 4;

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out
}

/// Resident memory of a process, kB (`None` once it is gone).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `palette load --json` on the system; returns the report's `total`.
fn load(system: &Path, rate: f64, duration: &str) -> serde_json::Value {
    let run = palette([
        "load",
        system.to_str().unwrap(),
        "--rate",
        &rate.to_string(),
        "--duration",
        duration,
        "--warmup",
        "1s",
        "--timeout",
        "5s",
        "--json",
    ]);
    assert_eq!(run.code, 0, "palette load: {}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("load --json prints JSON");
    report["total"].clone()
}

fn p50(total: &serde_json::Value) -> f64 {
    total["latency"]["p50_ms"].as_f64().unwrap_or_else(|| panic!("no successful request: {total}"))
}

fn start_up(system: &Path) -> Child {
    let mut up = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["up", system.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palette up");
    wait_until_up(&mut up, Duration::from_secs(60));
    up
}

#[test]
fn twice_the_capacity_for_a_minute_is_refused_with_503_and_the_system_recovers() {
    let _host = crate::util::host_to_myself();
    if !Path::new("/proc/self/status").exists() {
        skip("no /proc: cannot watch the service processes");
        return;
    }
    let dir = Dir::new();
    let base = free_ports(2);
    let mut config = chain(&[base, base + 1], &[0, WORK_MS * 1_000_000]);
    config.limits.max_in_flight = IN_FLIGHT;
    let system = dir.write("sys/system.json", config.to_json());
    let mut up = start_up(&system);
    let services = children(up.id());
    assert_eq!(services.len(), 2, "one process per service");

    let before = load(&system, 10.0, "4s");
    // Capacity: what the system sustains when offered far more than it can serve.
    let saturated = load(&system, 400.0, "4s");
    let capacity = saturated["achieved_rate"].as_f64().unwrap();
    assert!(capacity > 5.0, "the system serves something: {saturated}");

    let rss_before: Vec<u64> = services.iter().map(|&p| rss_kb(p).expect("service alive")).collect();
    let overload = {
        let system = system.clone();
        std::thread::spawn(move || load(&system, 2.0 * capacity, "60s"))
    };
    let mut peak = rss_before.clone();
    let mut settled: Option<Vec<u64>> = None;
    let started = Instant::now();
    while !overload.is_finished() {
        std::thread::sleep(Duration::from_millis(500));
        for (i, &p) in services.iter().enumerate() {
            let rss = rss_kb(p).unwrap_or_else(|| panic!("service process {p} exited under overload"));
            peak[i] = peak[i].max(rss);
        }
        if settled.is_none() && started.elapsed() > Duration::from_secs(10) {
            settled = Some(peak.clone());
        }
    }
    let over = overload.join().unwrap();
    assert_eq!(children(up.id()), services, "no service exited or was restarted");
    let settled = settled.expect("the overload ran for more than 10 s");
    for i in 0..services.len() {
        // Memory is bounded by max_in_flight, not by the offered load: after
        // the first seconds it does not keep growing.
        assert!(
            peak[i] <= settled[i] + 20_000,
            "service {i}: RSS grew from {} kB (10 s in) to {} kB (start {} kB)",
            settled[i],
            peak[i],
            rss_before[i]
        );
    }
    let refused = over["errors_by_kind"]["503"].as_u64().unwrap_or(0);
    let requests = over["requests"].as_u64().unwrap();
    assert!(refused * 5 > requests, "the excess gets 503: {refused} of {requests}: {over}");
    assert!(over["ok"].as_u64().unwrap() * 4 > requests, "the capacity is still served: {over}");

    let after = load(&system, 10.0, "4s");
    assert_eq!(after["errors"].as_u64(), Some(0), "no errors at low load after the overload: {after}");
    assert!(
        p50(&after) <= p50(&before) * 1.5 + 5.0,
        "latency recovers: p50 {} ms before, {} ms after",
        p50(&before),
        p50(&after)
    );

    assert!(Command::new("kill").args(["-TERM", &up.id().to_string()]).status().unwrap().success());
    let status = up.wait().unwrap();
    let mut err = String::new();
    let _ = up.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("0 restarts"), "{err}");
    // The refusals are traced: error spans, and every line of the file parses.
    let spans = std::fs::read_to_string(dir.path("sys/spans.jsonl")).unwrap();
    let mut errors = 0;
    for (n, line) in spans.lines().enumerate() {
        let doc: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("spans.jsonl:{}: whole JSON: {e}", n + 1));
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                errors += ss["spans"].as_array().into_iter().flatten().filter(|sp| sp["status"]["code"] == 2).count();
            }
        }
    }
    assert!(errors as u64 >= refused / 2, "{errors} error spans for {refused} refusals");
    eprintln!(
        "overload: capacity {capacity:.1}/s; at 2x for 60 s {refused} of {requests} got 503, {errors} error spans; \
         RSS kB start {rss_before:?} 10 s {settled:?} peak {peak:?}; p50 {:.1} ms before, {:.1} ms after",
        p50(&before),
        p50(&after)
    );
}
