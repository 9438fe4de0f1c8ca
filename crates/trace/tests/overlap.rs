//! Inputs that do not belong together: the same traces in two files, or
//! systems that share no service, found while reading and reported as
//! [`InputWarning`]s.

use std::io::Write;
use std::path::{Path, PathBuf};

use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
use palette_testkit::examples;
use palette_testkit::system::{self, Traces};
use palette_trace::span::{Span, TraceId};
use palette_trace::{
    CallTree, InputWarning, InputWarningKind, Interner, NoProgress, ReadOptions, input_overlap, read_traces, write,
};

fn write_with(path: &Path, traces: &[Vec<Span>], names: &Interner, writer: &str) -> PathBuf {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let spans = traces.iter().map(Vec::as_slice);
    match writer {
        "otlp" => write::write_otlp_lines(&mut out, spans, names),
        "jaeger" => write::write_jaeger(&mut out, spans, names),
        "zipkin" => write::write_zipkin(&mut out, spans, names),
        _ => write::write_span_csv(&mut out, spans, names),
    }
    .expect("write");
    out.flush().expect("flush");
    path.to_path_buf()
}

/// The warnings of reading `inputs`, checking the library function agrees
/// with the read.
fn warnings(inputs: &[PathBuf]) -> Vec<InputWarning> {
    warnings_with(inputs, &ReadOptions::default())
}

fn warnings_with(inputs: &[PathBuf], opts: &ReadOptions) -> Vec<InputWarning> {
    let mut sink = |_: &CallTree| Ok(());
    let read = read_traces(inputs, opts, &NoProgress, &mut sink).expect("read");
    let alone = input_overlap(inputs, opts, &NoProgress).expect("input_overlap");
    assert_eq!(read.input_warnings, alone);
    read.input_warnings
}

fn webshop() -> Traces {
    system::generate(&examples::webshop(), 300, 5)
}

#[test]
fn the_same_traces_in_two_formats_share_trace_ids() {
    let shop = webshop();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_with(&dir.path().join("shop.jaeger.json"), &shop.traces, &shop.names, "jaeger");
    let b = write_with(&dir.path().join("shop.otlp.jsonl"), &shop.traces, &shop.names, "otlp");
    let w = warnings(&[dir.path().to_path_buf()]);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].kind, InputWarningKind::SharedTraceIds);
    assert_eq!(w[0].files, [a.clone(), b.clone()]);
    assert_eq!((w[0].count, w[0].repeated, w[0].estimated), (300, 300, false));
    assert_eq!(
        w[0].to_string(),
        format!(
            "{} and {} share 300 trace ids (the same traces in two files?); they are fitted as one input",
            a.display(),
            b.display()
        )
    );
}

#[test]
fn unrelated_systems_share_no_service() {
    let shop = webshop();
    let fig = system::generate(&examples::figure1(), 300, 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let f = write_with(&dir.path().join("figure1.otlp.jsonl"), &fig.traces, &fig.names, "otlp");
    let s = write_with(&dir.path().join("shop.zipkin.json"), &shop.traces, &shop.names, "zipkin");
    let w = warnings(&[s.clone(), f.clone()]);
    assert_eq!(w.len(), 1, "{w:#?}");
    // The web shop has more spans: Figure 1 is the one reported.
    assert_eq!(w[0].kind, InputWarningKind::DisjointServices);
    assert_eq!(w[0].files, std::slice::from_ref(&f));
    assert_eq!(w[0].others, std::slice::from_ref(&s));
    assert_eq!(w[0].count, examples::figure1().services().len() as u64);
    assert_eq!(
        w[0].to_string(),
        format!(
            "{} shares no service with the other inputs ({}): unrelated systems are fitted as one",
            f.display(),
            s.display()
        )
    );
}

#[test]
fn two_halves_of_one_system_belong_together() {
    let shop = webshop();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_with(&dir.path().join("a.jsonl"), &shop.traces[..150], &shop.names, "otlp");
    let b = write_with(&dir.path().join("b.csv"), &shop.traces[150..], &shop.names, "csv");
    assert_eq!(warnings(&[a, b]), []);
}

#[test]
fn a_trace_split_across_two_files_is_one_trace_not_a_warning() {
    // Every trace's spans halved between the files, as when an exporter
    // rotates its file in the middle of traces.
    let shop = webshop();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for t in &shop.traces {
        let cut = t.len() / 2;
        first.push(t[..cut].to_vec());
        second.push(t[cut..].to_vec());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_with(&dir.path().join("a.jsonl"), &first, &shop.names, "otlp");
    let b = write_with(&dir.path().join("b.jsonl"), &second, &shop.names, "otlp");
    assert_eq!(warnings(&[a, b]), []);
}

#[test]
fn the_same_spans_under_other_trace_ids_share_span_ids() {
    let shop = webshop();
    let renamed: Vec<Vec<Span>> = shop
        .traces
        .iter()
        .map(|t| t.iter().map(|s| Span { trace_id: TraceId::new(!s.trace_id.as_u128()), ..s.clone() }).collect())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_with(&dir.path().join("a.jsonl"), &shop.traces, &shop.names, "otlp");
    let b = write_with(&dir.path().join("b.jsonl"), &renamed, &shop.names, "otlp");
    let w = warnings(&[a.clone(), b.clone()]);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].kind, InputWarningKind::SharedSpanIds);
    assert_eq!(w[0].files, [a, b]);
    assert_eq!(w[0].count, shop.span_count() as u64);
}

#[test]
fn windowed_alibaba_files_with_the_same_calls_share_trace_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = AlibabaConfig { rows: 5_000, services: 50, ..AlibabaConfig::default() };
    let mut paths = Vec::new();
    for (name, schema) in [("v2021.csv", Schema::V2021), ("v2022.csv", Schema::V2022)] {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).expect("create");
        write_alibaba(&AlibabaConfig { schema, ..cfg.clone() }, std::io::BufWriter::new(file)).expect("write");
        paths.push(path);
    }
    let traces = |p: &Path| {
        let mut n = 0u64;
        let mut sink = |_: &CallTree| {
            n += 1;
            Ok(())
        };
        read_traces(&[p.to_path_buf()], &ReadOptions::default(), &NoProgress, &mut sink).expect("read");
        n
    };
    let (old, new) = (traces(&paths[0]), traces(&paths[1]));
    let w = warnings(&paths);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].kind, InputWarningKind::SharedTraceIds);
    // The v2021 file logs calls from both sides, so it ends sooner: all its
    // traces are in the other file.
    assert_eq!(w[0].count, old.min(new));
    assert_eq!(w[0].repeated, w[0].count);
    // A window far shorter than the files: each file's traces close (often
    // in several pieces) before the next file opens, and are still matched.
    let short = ReadOptions { window_ns: Some(Some(1_000_000)), ..ReadOptions::default() };
    assert_eq!(warnings_with(&paths, &short), w);

    // Cut in two at a row: the traces across the cut are split, not repeated.
    let text = std::fs::read_to_string(&paths[1]).expect("read back");
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() / 2;
    let a = dir.path().join("cut-a.csv");
    let b = dir.path().join("cut-b.csv");
    std::fs::write(&a, lines[..cut].join("\n") + "\n").expect("write");
    std::fs::write(&b, format!("{}\n{}\n", lines[0], lines[cut..].join("\n"))).expect("write");
    assert_eq!(warnings(&[a, b]), []);
}

#[test]
fn one_file_is_not_checked() {
    let shop = webshop();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_with(&dir.path().join("a.jsonl"), &shop.traces, &shop.names, "otlp");
    assert_eq!(warnings(&[a]), []);
}
