//! Inputs that are not regular files, or too big to hold: devices are
//! refused at once, a FIFO nobody writes gives up, a pipe that never ends
//! stops at the record limit, and a big document read under a memory limit
//! gives a result, never an allocation failure.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Waits for `child` at most `within`; kills it and fails when it takes longer.
fn finish(mut child: Child, within: Duration, what: &str) -> (Run, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            let took = started.elapsed();
            return (child.wait_with_output().expect("output").into(), took);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

fn palette_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palette"))
}

/// Asserts exit 65 with one `palette: error:` line holding every needle.
fn bad_data(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 65, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let msg = run.stderr.trim_end();
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    assert!(msg.starts_with("palette: error: "), "{msg}");
    for needle in needles {
        assert!(msg.contains(needle), "`{needle}` in: {msg}");
    }
}

fn mkfifo(path: &Path) -> bool {
    match Command::new("mkfifo").arg(path).status() {
        Ok(s) if s.success() => true,
        _ => {
            skip("mkfifo is not available");
            false
        }
    }
}

#[test]
fn dev_zero_is_refused_at_once() {
    for extra in [&["--format", "otlp"][..], &[]] {
        let child = spawn(palette_cmd().arg("inspect").args(extra).arg("/dev/zero"));
        let (run, took) = finish(child, Duration::from_secs(5), "palette inspect /dev/zero");
        bad_data(&run, &["/dev/zero: a character device", "palette reads regular files, directories and pipes"]);
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
}

#[test]
fn a_fifo_without_a_writer_gives_up_after_ten_seconds() {
    let dir = Dir::new();
    let fifo = dir.path("traces.jsonl");
    if !mkfifo(&fifo) {
        return;
    }
    let child = spawn(palette_cmd().arg("inspect").arg(&fifo));
    let (run, took) = finish(child, Duration::from_secs(30), "palette inspect on a FIFO without writer");
    bad_data(
        &run,
        &[&format!(
            "{}: a FIFO that no program opened for writing within 10 s; start its writer first",
            fifo.display()
        )],
    );
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_fifo_is_read_once_its_writer_comes() {
    let dir = Dir::new();
    let fifo = dir.path("traces.jsonl");
    if !mkfifo(&fifo) {
        return;
    }
    let source = write_webshop(&dir);
    let expected = inspect_json(&[&source], &[]);
    // The writer opens the FIFO a second after palette starts waiting; the
    // format is detected from the pipe and reading goes on from there.
    let writer = Command::new("sh").arg("-c").arg("sleep 1; cat \"$0\" > \"$1\"").arg(&source).arg(&fifo).spawn();
    let mut writer = writer.expect("start the writer");
    let child = spawn(palette_cmd().args(["inspect", "--json"]).arg(&fifo));
    let (run, _) = finish(child, Duration::from_secs(30), "palette inspect on a FIFO");
    writer.wait().expect("writer");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(got["traces"], expected["traces"]);
    assert_eq!(got["spans"], expected["spans"]);
}

/// The web shop's OTLP example, written by `palette example`.
fn write_webshop(dir: &Dir) -> std::path::PathBuf {
    let out = dir.path("ex");
    let mut args: Vec<std::ffi::OsString> =
        ["example", "--traces", "50", "--alibaba-rows", "10", "-o"].map(Into::into).into();
    args.push(out.clone().into());
    let run = palette(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    out.join("webshop.otlp.jsonl")
}

#[test]
fn process_substitution_is_read_with_or_without_a_format() {
    if Command::new("bash").arg("-c").arg("true").status().map_or(true, |s| !s.success()) {
        skip("bash is not available");
        return;
    }
    let dir = Dir::new();
    let source = write_webshop(&dir);
    let expected = inspect_json(&[&source], &[]);
    for extra in ["--format otlp", ""] {
        let script = format!("exec \"$0\" inspect --json {extra} <(cat \"$1\")");
        let child = spawn(Command::new("bash").arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_palette")).arg(&source));
        let (run, _) = finish(child, Duration::from_secs(30), "palette inspect <(cat …)");
        assert_eq!(run.code, 0, "{extra}: {}", run.stderr);
        let got: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
        assert_eq!(got["traces"], expected["traces"], "{extra}");
        assert_eq!(got["spans"], expected["spans"], "{extra}");
    }
}

#[test]
fn a_pipe_that_never_ends_stops_at_the_record_limit() {
    let dir = Dir::new();
    let fifo = dir.path("endless.json");
    if !mkfifo(&fifo) {
        return;
    }
    // A document that opens and then never ends: spaces, forever.
    let writer = Command::new("sh")
        .arg("-c")
        .arg("{ printf '{\"resourceSpans\":['; tr '\\0' ' ' < /dev/zero; } > \"$0\"")
        .arg(&fifo)
        .stderr(Stdio::null())
        .spawn();
    let mut writer = writer.expect("start the writer");
    let child = spawn(palette_cmd().args(["inspect", "--format", "otlp"]).arg(&fifo));
    let (run, _) = finish(child, Duration::from_secs(30), "palette inspect on an endless pipe");
    let _ = writer.kill();
    let _ = writer.wait();
    bad_data(&run, &[&format!("{}:1: more than 16 MiB of JSON without a span beginning", fifo.display())]);
}

/// A Jaeger query document of `traces` traces of 20 spans, with `processes`
/// after `spans` as Jaeger writes it.
fn write_jaeger(path: &Path, traces: u32) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f.write_all(b"{\"data\":[").expect("write");
    for t in 1..=traces {
        if t > 1 {
            f.write_all(b",").expect("write");
        }
        write!(f, "{{\"traceID\":\"{t:032x}\",\"spans\":[").expect("write");
        for i in 1..=20u32 {
            let refs = if i == 1 {
                String::new()
            } else {
                format!(r#""references":[{{"refType":"CHILD_OF","spanID":"{:016x}","traceID":"{t:032x}"}}],"#, 1)
            };
            let sep = if i > 1 { "," } else { "" };
            write!(
                f,
                r#"{sep}{{"traceID":"{t:032x}","spanID":"{i:016x}",{refs}"operationName":"operation-{}","startTime":{},"duration":{},"processID":"p{}","tags":[{{"key":"span.kind","type":"string","value":"server"}},{{"key":"http.method","type":"string","value":"GET"}}],"logs":[]}}"#,
                i % 4,
                1_700_000_000_000_000u64 + t as u64 * 1_000 + i as u64,
                if i == 1 { 500 } else { 10 },
                i % 5
            )
            .expect("write");
        }
        f.write_all(b"],\"processes\":{").expect("write");
        for p in 0..5 {
            let sep = if p > 0 { "," } else { "" };
            write!(f, r#"{sep}"p{p}":{{"serviceName":"service-{p}","tags":[]}}"#).expect("write");
        }
        f.write_all(b"},\"warnings\":null}").expect("write");
    }
    f.write_all(b"],\"total\":0,\"limit\":0,\"offset\":0,\"errors\":null}\n").expect("write");
    f.flush().expect("flush");
}

#[test]
fn a_big_document_under_a_memory_limit_is_read() {
    // 36 MB of Jaeger JSON: held whole and parsed into a tree, it took
    // well over 300 MB and ended in `memory allocation … failed`.
    let dir = Dir::new();
    let path = dir.path("big.jaeger.json");
    write_jaeger(&path, 6_000);
    let size = std::fs::metadata(&path).expect("size").len();
    assert!(size > 30_000_000, "{size} bytes");
    let script = "ulimit -v 300000 && exec \"$0\" inspect --json \"$1\"";
    let child = spawn(Command::new("sh").arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_palette")).arg(&path));
    let (run, _) = finish(child, Duration::from_secs(60), "palette inspect under ulimit -v");
    assert!(!run.stderr.contains("memory allocation"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(report["traces"], 6_000);
    assert_eq!(report["spans"], 120_000);
}
