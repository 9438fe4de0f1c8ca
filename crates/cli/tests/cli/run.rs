//! `palette run`: the whole job on a built-in example, and what happens
//! when a service dies in the middle of it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, children, cmdline, free_ports, palette};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Issue 6's fault check: one service is killed (SIGKILL) while the system
/// is under load. The supervisor notices and restarts it, the run finishes
/// with its report, and the load report counts the errors the outage caused.
#[test]
fn a_service_killed_during_a_run_is_restarted_and_its_errors_are_counted() {
    if !Path::new("/proc/self/task").exists() {
        crate::util::skip("no /proc: cannot find the service processes to kill");
        return;
    }
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "400"]).code, 0);
    let input = dir.path("ex/webshop.otlp.jsonl");
    let out = dir.path("run");
    let base = free_ports(24);
    let run = Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["run", s(&input), "-o", s(&out), "--kind", "palette", "--rate", "40", "--duration", "8s"])
        .args(["--warmup", "1s", "--repeat", "1", "--base-port", &base.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palette run");
    // Wait until the system is under load (its first spans are flushed), then
    // kill the catalog service in the middle of the window.
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        assert!(Instant::now() < deadline, "the system never started");
        let serving: Vec<u32> =
            children(run.id()).into_iter().filter(|&p| cmdline(p).contains("--service=catalog")).collect();
        if let Some(&p) = serving.first()
            && std::fs::metadata(out.join("system-palette/spans.jsonl")).is_ok_and(|m| m.len() > 0)
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill").args(["-KILL", &victim.to_string()]).status().expect("run kill");
    assert!(killed.success());
    let output = run.wait_with_output().expect("palette run ends");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "the run finishes: {stderr}");
    assert!(stdout.contains("1 restart;") || stdout.contains("2 restarts;"), "the restart is reported: {stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("load-palette.json")).unwrap()).unwrap();
    let errors = report["total"]["errors"].as_u64().unwrap();
    let requests = report["total"]["requests"].as_u64().unwrap();
    assert!(errors > 0, "the outage caused errors, and they are counted: {report}");
    assert!(errors < requests, "the service came back: not every request failed ({errors} of {requests})");
    assert!(out.join("report/index.html").exists(), "the report is written");
    // Every line of the span file parses: a killed writer leaves no partial line.
    // The live system's own file too: the killed service wrote into it.
    let mut caller_errors = 0;
    for file in [out.join("spans-palette.jsonl"), out.join("system-palette/spans.jsonl")] {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (n, line) in text.lines().enumerate() {
            let doc: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: every span line is whole JSON: {e}", file.display(), n + 1));
            caller_errors += error_spans_outside(&doc, "catalog");
        }
    }
    assert!(caller_errors > 0, "the callers of the killed service recorded error spans");
}

/// Spans with an error status (OTLP code 2) from services other than `victim`.
fn error_spans_outside(doc: &serde_json::Value, victim: &str) -> usize {
    let mut n = 0;
    for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("");
        if service == victim {
            continue;
        }
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            n += ss["spans"].as_array().into_iter().flatten().filter(|sp| sp["status"]["code"] == 2).count();
        }
    }
    n
}

/// `--rpc grpc` and `--apply`: the models carry the interventions, the
/// system speaks gRPC between its services, and the run completes cleanly.
#[test]
fn run_with_rpc_grpc_and_an_intervention_file() {
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "300", "--alibaba-rows", "100"]).code, 0);
    let input = dir.path("ex/figure1.otlp.jsonl");
    let whatif = dir.write("whatif.yaml", "- delay: { into: B, add_ms: 1 }\n");
    let out = dir.path("run");
    let base = free_ports(8).to_string();

    let missing = palette(["run", s(&input), "-o", s(&out), "--apply", "nope.yaml"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("nope.yaml"), "{}", missing.stderr);
    assert!(!out.exists(), "nothing is written for a missing file");
    let bad = palette(["run", s(&input), "-o", s(&out), "--rpc", "smoke"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    let run = palette([
        "run",
        s(&input),
        "-o",
        s(&out),
        "--kind",
        "palette",
        "--rate",
        "40",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--repeat",
        "1",
        "--base-port",
        &base,
        "--packed",
        "--rpc",
        "grpc",
        "--apply",
        s(&whatif),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(" 0 errors"), "{}", run.stdout);
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model-palette.json")).unwrap()).unwrap();
    assert_eq!(model["deploy"]["rpc"], "grpc");
    let applied = model["provenance"]["interventions"].to_string();
    assert!(applied.contains("delay") && applied.contains("rpc"), "both files are recorded: {applied}");
    assert!(out.join("rpc-grpc.yaml").is_file(), "DIR shows what --rpc applied");
    let system: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("system-palette/system.json")).unwrap()).unwrap();
    assert_eq!(system["rpc"], "grpc");
    let spans = std::fs::read_to_string(out.join("spans-palette.jsonl")).unwrap();
    assert!(spans.contains("\"rpc.system\""), "calls between services went over gRPC");
    assert!(out.join("report/index.html").is_file());
}

/// Issue 18's retry storm: B made slow with `delay`, A timing out its
/// calls to B and retrying them. Live, every request through A tries B
/// three times and fails; B serves about twice the requests per root
/// request (C's calls are not timed out), and the report says so.
#[test]
fn a_retry_storm_multiplies_the_requests_per_root_request() {
    let dir = Dir::new();
    assert_eq!(palette(["example", "-o", s(&dir.path("ex")), "--traces", "300", "--alibaba-rows", "100"]).code, 0);
    let input = dir.path("ex/figure1.otlp.jsonl");
    let storm = dir.write(
        "storm.yaml",
        "- delay: { into: B, add_ms: 30 }\n\
         - timeout: { caller: A, callee: B, ms: 15 }\n\
         - retry: { callee: B, attempts: 3, backoff_ms: 2 }\n",
    );
    let out = dir.path("run");
    let base = free_ports(8).to_string();
    let run = palette([
        "run",
        s(&input),
        "-o",
        s(&out),
        "--kind",
        "palette",
        "--rate",
        "30",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--repeat",
        "1",
        "--base-port",
        &base,
        "--apply",
        s(&storm),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run.stdout.lines().find(|l| l.trim_start().starts_with("B b ")).unwrap_or_else(|| {
        panic!("the report shows B's requests per root request: {}", run.stdout);
    });
    println!("storm: {}", line.trim());
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report/comparison.json")).unwrap()).unwrap();
    let amp = cmp["failures"]["palette"]["amplification"].as_array().unwrap();
    let b = amp.iter().find(|a| a["api"].to_string().contains("\"B\"")).expect("B's amplification");
    let ratio = b["ratio"].as_f64().unwrap();
    println!("storm: B requests per root request {:.3} → {:.3} (×{ratio:.2})", b["original"], b["candidate"]);
    assert!((1.6..=2.4).contains(&ratio), "A's calls to B are tried three times, C's once: ×{ratio}");
    let roots = cmp["failures"]["palette"]["roots"].as_array().unwrap();
    let a = roots.iter().find(|r| r["api"].to_string().contains("\"A\"")).unwrap();
    println!("storm: A failed {} → {}", a["original"]["rate"], a["candidate"]["rate"]);
    assert!(a["candidate"]["rate"].as_f64().unwrap() > 0.95, "every request through A times out: {a}");
    let spans = std::fs::read_to_string(out.join("spans-palette.jsonl")).unwrap();
    assert!(spans.contains("\"palette.attempt\""), "retries are client spans with their attempt number");
}

/// Issue 18, live: traces of a system whose B fails 10% of the time and
/// whose A passes half of those failures on. The generated services fail as
/// the traces do: the failure rate of each root API, live, is within the
/// noise floor of the traced one.
#[test]
fn live_failure_rates_per_root_api_match_the_traces() {
    use palette_testkit::system::{Dist, Step, SystemSpec, generate};
    let work = |ms: f64| Step::Work(Dist::LogNormal { median: ms, sigma: 0.3 });
    let mut spec = SystemSpec::new("failing");
    spec.api("A/a", Step::Seq(vec![work(1.0), Step::CallOrFail { callee: "B/b".into(), propagate: 0.5 }, work(0.5)]))
        .api("C/c", Step::Seq(vec![work(1.0), Step::CallOrFail { callee: "B/b".into(), propagate: 1.0 }]))
        .api("B/b", Step::Seq(vec![work(1.0), Step::Fail(0.1)]))
        .root("A/a", 0.5)
        .root("C/c", 0.5);
    let traces = generate(&spec, 4_000, 5);
    let dir = Dir::new();
    let input = dir.path("failing.otlp.jsonl");
    palette_trace::write::write_otlp_lines(
        std::io::BufWriter::new(std::fs::File::create(&input).unwrap()),
        traces.traces.iter().map(Vec::as_slice),
        &traces.names,
    )
    .unwrap();
    let out = dir.path("run");
    let base = free_ports(8).to_string();
    let run = palette([
        "run",
        s(&input),
        "-o",
        s(&out),
        "--kind",
        "palette",
        "--rate",
        "100",
        "--duration",
        "6s",
        "--warmup",
        "1s",
        "--repeat",
        "1",
        "--base-port",
        &base,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report/comparison.json")).unwrap()).unwrap();
    for r in cmp["failures"]["palette"]["roots"].as_array().unwrap() {
        let (o, c, floor) = (&r["original"], &r["candidate"], r["floor"].as_f64().unwrap());
        println!(
            "live failures: {}: traced {:.4} ({} of {}), live {:.4} ({} of {}), floor {floor:.4}",
            r["api"]["service"], o["rate"], o["failed"], o["total"], c["rate"], c["failed"], c["total"]
        );
        assert!(c["total"].as_u64().unwrap() > 200, "the live system answered: {r}");
        assert_eq!(r["within"], true, "{r}");
    }
    assert!(run.stdout.contains("failed requests by root API"), "{}", run.stdout);
}
