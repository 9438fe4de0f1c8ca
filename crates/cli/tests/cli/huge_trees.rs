//! Wide, long and deep call trees: `fit`, `fit --partial` + `merge` and
//! `simulate` give a result (or refuse with exit 65), never a crash, and
//! print how much memory and time each took.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::Dir;

const MS: u64 = 1_000_000;

/// Writes a span CSV trace (one trace, id 1) with the rows `spans` yields:
/// (span id, parent id or 0 for the root, service, operation, start ns, end ns).
/// Every span is a SERVER span, so none is taken for its caller's record of
/// a call (which a span of unknown kind wrapping one of another service is).
fn write_trace(path: &Path, spans: impl Iterator<Item = (u64, u64, &'static str, &'static str, u64, u64)>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create trace"));
    writeln!(out, "TraceID,SpanID,ParentID,ServiceName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Kind").unwrap();
    for (id, parent, service, operation, start, end) in spans {
        let parent = if parent == 0 { "root".to_string() } else { format!("{parent:x}") };
        writeln!(out, "1,{id:x},{parent},{service},{operation},{start},{end},server").unwrap();
    }
    out.flush().unwrap();
}

/// How one run of `palette` ended.
struct Measured {
    code: Option<i32>,
    stderr: String,
    peak_rss_kib: Option<u64>,
    took: Duration,
}

/// Runs `palette args`, measuring its peak resident memory: exactly with
/// GNU time when the host has it, else from the kernel's high-water mark,
/// read while the process runs.
fn measured(dir: &Dir, args: &[&std::ffi::OsStr]) -> Measured {
    use std::os::unix::process::ExitStatusExt;
    let bin = env!("CARGO_BIN_EXE_palette");
    let time = Path::new("/usr/bin/time");
    let rss_file = dir.path("peak-rss");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let t0 = Instant::now();
    let mut child = cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("run palette");
    let stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut high_water = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for palette") {
            break status;
        }
        if let Some(kib) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        {
            high_water = Some(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    let stderr = reader.join().expect("stderr reader");
    let timed = std::fs::read_to_string(&rss_file).unwrap_or_default();
    // GNU time reports a child killed by a signal as "Command terminated by
    // signal N" and exits 128 + N itself.
    let killed = status.signal().is_some() || timed.contains("terminated by signal");
    let peak_rss_kib = timed.lines().last().and_then(|l| l.trim().parse().ok()).or(high_water);
    Measured { code: if killed { None } else { status.code() }, stderr: stderr + &timed, peak_rss_kib, took }
}

/// Runs `palette args` and checks it gave a result (exit 0) or refused the
/// input as bad data with a message (exit 65), and was not killed; prints
/// what it cost. Returns whether there is a result.
fn ran(dir: &Dir, what: &str, args: &[&std::ffi::OsStr]) -> bool {
    let m = measured(dir, args);
    let rss = m.peak_rss_kib.map_or_else(|| "unknown".to_string(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    let line = format!("{what}: exit {:?}, {:.1} s, peak RSS {rss}", m.code, m.took.as_secs_f64());
    let _ = writeln!(std::io::stderr(), "{line}");
    match m.code {
        Some(0) => true,
        Some(65) => {
            assert!(m.stderr.contains("palette: error:") && m.stderr.contains("limit"), "{line}: {}", m.stderr);
            false
        }
        _ => panic!("{line}: {}", m.stderr),
    }
}

/// `fit`, `fit --partial` + `merge` (the same model) and `simulate` on `trace`.
/// Returns the model, if the trace was not refused.
fn fit_merge_simulate(dir: &Dir, name: &str, trace: &Path) -> Option<serde_json::Value> {
    let os = |p: &PathBuf| p.as_os_str().to_owned();
    let (model, partial, merged, synthetic) = (
        dir.path(&format!("{name}.model.json")),
        dir.path(&format!("{name}.partial.json")),
        dir.path(&format!("{name}.merged.json")),
        dir.path(&format!("{name}.synthetic.jsonl")),
    );
    let t = trace.as_os_str();
    let fitted = ran(dir, &format!("{name} fit"), &["fit".as_ref(), t, "-o".as_ref(), &os(&model)]);
    let partial_fitted = ran(
        dir,
        &format!("{name} fit --partial"),
        &["fit".as_ref(), "--partial".as_ref(), t, "-o".as_ref(), &os(&partial)],
    );
    assert_eq!(fitted, partial_fitted, "{name}: fit and fit --partial agree on refusing");
    if !fitted {
        return None;
    }
    assert!(ran(dir, &format!("{name} merge"), &["merge".as_ref(), &os(&partial), "-o".as_ref(), &os(&merged)]));
    let model_text = std::fs::read_to_string(&model).unwrap();
    assert!(model_text == std::fs::read_to_string(&merged).unwrap(), "{name}: merge gives the bytes fit gave");
    assert!(ran(
        dir,
        &format!("{name} simulate"),
        &["simulate".as_ref(), &os(&model), "-n".as_ref(), "1".as_ref(), "-o".as_ref(), &os(&synthetic)]
    ));
    assert_eq!(std::fs::read_to_string(&synthetic).unwrap().lines().count(), 1, "{name}: one synthetic trace");
    Some(serde_json::from_str(&model_text).expect("model.json is JSON"))
}

/// The API `service operation` of a model.
fn api<'m>(model: &'m serde_json::Value, service: &str, operation: &str) -> &'m serde_json::Value {
    model["apis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["service"] == service && a["operation"] == operation)
        .unwrap_or_else(|| panic!("no API {service} {operation}"))
}

#[test]
fn a_span_with_a_million_children() {
    let _host = crate::util::host_shared();
    let dir = Dir::new();
    let trace = dir.path("wide.csv");
    let n = 1_000_000u64;
    // All at once: one stage of a million concurrent calls.
    let children = (0..n).map(|i| (i + 2, 1, "back", "get", MS, 2 * MS));
    write_trace(&trace, std::iter::once((1, 0, "front", "GET /", 0, 3 * MS)).chain(children));
    let Some(model) = fit_merge_simulate(&dir, "wide", &trace) else { return };
    let front = api(&model, "front", "GET /");
    let widest = front["states"].as_array().unwrap().iter().map(|s| s["calls"].as_array().unwrap().len()).max();
    assert_eq!(widest, Some(n as usize), "one stage of every call");
    assert_eq!(api(&model, "back", "get")["count"], n);
}

#[test]
fn a_sequence_of_a_hundred_thousand_calls_to_one_api() {
    let _host = crate::util::host_shared();
    let dir = Dir::new();
    let trace = dir.path("loop.csv");
    let n = 100_000u64;
    // One after another: a run of 100,000 equal stages.
    let calls = (0..n).map(|i| (i + 2, 1, "back", "get", (2 * i + 1) * MS, (2 * i + 2) * MS));
    write_trace(&trace, std::iter::once((1, 0, "front", "GET /", 0, (2 * n + 1) * MS)).chain(calls));
    let Some(model) = fit_merge_simulate(&dir, "loop", &trace) else { return };
    let states = api(&model, "front", "GET /")["states"].as_array().unwrap().clone();
    let repeats: Vec<_> = states.iter().filter_map(|s| s.get("repeats")).collect();
    assert_eq!(repeats, [&serde_json::json!([[n, 1]])], "one counted loop, its run counted in full");
    // Simulated, the loop runs as long as traced: a CLIENT and a SERVER span per call.
    let synthetic = std::fs::read_to_string(dir.path("loop.synthetic.jsonl")).unwrap();
    assert_eq!(synthetic.matches("\"spanId\"").count() as u64, 2 * n + 1);
}

#[test]
fn a_sequence_of_a_hundred_thousand_calls_to_alternating_apis() {
    let _host = crate::util::host_shared();
    let dir = Dir::new();
    let trace = dir.path("sequence.csv");
    let n = 100_000u64;
    let ops = ["a", "b", "c"];
    let calls = (0..n).map(|i| (i + 2, 1, "back", ops[(i % 3) as usize], (2 * i + 1) * MS, (2 * i + 2) * MS));
    write_trace(&trace, std::iter::once((1, 0, "front", "GET /", 0, (2 * n + 1) * MS)).chain(calls));
    let Some(model) = fit_merge_simulate(&dir, "sequence", &trace) else { return };
    let states = api(&model, "front", "GET /")["states"].as_array().unwrap().len();
    // Nothing repeats right after itself and states merge only at equal
    // depth: the PFA is the traced path, start included.
    assert_eq!(states, n as usize + 1);
}

#[test]
fn a_chain_a_hundred_thousand_calls_deep() {
    let _host = crate::util::host_shared();
    let dir = Dir::new();
    let trace = dir.path("deep.csv");
    let n = 100_000u64;
    let services = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"];
    // Span k calls span k+1, which runs inside it.
    let chain = (1..=n).map(|k| (k, k - 1, services[(k % 7) as usize], "op", k * MS, (2 * n + 1 - k) * MS));
    write_trace(&trace, chain);
    let Some(model) = fit_merge_simulate(&dir, "deep", &trace) else { return };
    let executions: u64 = model["apis"].as_array().unwrap().iter().map(|a| a["count"].as_u64().unwrap()).sum();
    assert_eq!(executions, n, "every execution of the chain is counted");
}
