//! Integration tests of the library API: ground-truth traces from the
//! testkit go out through every writer and back in through `read_traces`,
//! and the assembled call trees must be the ones the generator ran.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use palette_testkit::examples;
use palette_testkit::system::{self, SystemSpec, Traces};
use palette_trace::span::{Span, SpanKind};
use palette_trace::{
    CallTree, EdgeKind, Exec, Format, InspectSummary, NoProgress, ReadOptions, ReadSummary, TraceStats, read_traces, write,
};

/// Everything one read produced.
struct Read {
    summary: InspectSummary,
    read: ReadSummary,
    trees: Vec<CallTree>,
}

impl Read {
    /// `service operation` of execution `i` of `tree`.
    fn api(&self, tree: &CallTree, i: usize) -> String {
        tree.execs[i].api.display(&self.read.names).to_string()
    }

    /// Every trace as (API, parent index, edge kind) per execution, keyed by
    /// trace id: the structure, without the times.
    fn shapes(&self) -> BTreeMap<String, Vec<(String, u32, EdgeKind)>> {
        self.trees
            .iter()
            .map(|t| {
                let shape = (0..t.execs.len()).map(|i| (self.api(t, i), t.execs[i].parent, t.execs[i].edge)).collect();
                (t.trace_id.to_string(), shape)
            })
            .collect()
    }

    /// Distinct (caller, callee, kind) edges.
    fn edges(&self) -> BTreeSet<(String, String, EdgeKind)> {
        let mut out = BTreeSet::new();
        for t in &self.trees {
            for (i, e) in t.execs.iter().enumerate().skip(1) {
                out.insert((self.api(t, e.parent as usize), self.api(t, i), e.edge));
            }
        }
        out
    }

    /// The summary with the file list cleared, for comparing reads of the
    /// same traces from different files.
    fn summary_without_files(&self) -> InspectSummary {
        InspectSummary { files: Vec::new(), ..self.summary.clone() }
    }
}

fn read_with(inputs: &[PathBuf], opts: &ReadOptions) -> Read {
    let mut stats = TraceStats::default();
    let mut trees = Vec::new();
    let mut sink = |tree: &CallTree| {
        stats.add(tree);
        trees.push(tree.clone());
        Ok(())
    };
    let read =
        read_traces(inputs, opts, &NoProgress, &mut sink).unwrap_or_else(|e| panic!("reading {inputs:?} failed: {e}"));
    let summary = stats.summary(&read);
    Read { summary, read, trees }
}

fn read(input: &Path) -> Read {
    read_with(&[input.to_path_buf()], &ReadOptions::default())
}

type Writer = fn(&mut dyn Write, &[&[Span]], &palette_trace::Interner) -> std::io::Result<()>;

/// The four writers, with the file name each writes to.
fn writers() -> [(&'static str, Writer); 4] {
    [
        ("webshop.otlp.jsonl", |w, t, n| write::write_otlp_lines(w, t.iter().copied(), n)),
        ("webshop.jaeger.json", |w, t, n| write::write_jaeger(w, t.iter().copied(), n)),
        ("webshop.zipkin.json", |w, t, n| write::write_zipkin(w, t.iter().copied(), n)),
        ("webshop.spans.csv", |w, t, n| write::write_span_csv(w, t.iter().copied(), n)),
    ]
}

/// Writes `traces` with `writer` to `path`, gzipped when the name ends in `.gz`.
fn write_file(path: &Path, writer: Writer, traces: &[&[Span]], names: &palette_trace::Interner) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        writer(&mut gz, traces, names).expect("write");
        gz.finish().expect("finish gzip").flush().expect("flush");
    } else {
        let mut file = file;
        writer(&mut file, traces, names).expect("write");
        file.flush().expect("flush");
    }
}

/// The web shop, 300 requests, seed 5: the shared ground truth.
fn webshop() -> Traces {
    system::generate(&examples::webshop(), 300, 5)
}

fn count_kind(t: &Traces, kind: SpanKind) -> u64 {
    t.traces.iter().flatten().filter(|s| s.kind == kind).count() as u64
}

/// The calls a system's spec can make, as (`caller`, `callee`) names.
fn spec_edges(spec: &SystemSpec) -> BTreeSet<(String, String)> {
    let name = |key: &str| {
        let a = &spec.apis[key];
        format!("{} {}", a.service, a.operation)
    };
    let mut out = BTreeSet::new();
    for (key, api) in &spec.apis {
        for c in api.body.callees() {
            out.insert((name(key), name(c)));
        }
    }
    out
}

#[test]
fn every_writer_reads_back_to_the_same_traces() {
    let shop = webshop();
    let traces: Vec<&[Span]> = shop.traces.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let reads: Vec<(&str, Read)> = writers()
        .into_iter()
        .map(|(name, writer)| {
            let path = dir.path().join(name);
            write_file(&path, writer, &traces, &shop.names);
            (name, read(&path))
        })
        .collect();

    let client_spans = count_kind(&shop, SpanKind::Client);
    let (first_name, first) = &reads[0];
    let s = &first.summary;
    // The ground truth, exactly: every span, one trace per request, every
    // client span folded into its call.
    assert_eq!(s.traces, 300);
    assert_eq!(s.spans, shop.span_count() as u64);
    assert_eq!(s.records, shop.span_count() as u64);
    assert_eq!(s.services, examples::webshop().services().len() as u64);
    assert_eq!(s.services, 20);
    assert_eq!(s.apis, examples::webshop().apis.len() as u64);
    assert_eq!(s.root_apis.len(), 4);
    assert_eq!(s.folded_client_spans, client_spans);
    assert_eq!(s.local_edges, 0, "every web-shop call crosses services");
    assert!(s.defects.is_empty(), "no defects: {:?}", s.defects);
    assert_eq!(first.read.files.iter().map(|f| f.1).collect::<Vec<_>>(), [Format::Otlp]);

    for (name, r) in &reads[1..] {
        assert_eq!(r.summary_without_files(), first.summary_without_files(), "{name} and {first_name} disagree");
        assert_eq!(r.shapes(), first.shapes(), "{name} and {first_name} assemble different call trees");
    }
    let formats: Vec<Format> = reads.iter().map(|(_, r)| r.read.files[0].1).collect();
    assert_eq!(formats, [Format::Otlp, Format::Jaeger, Format::Zipkin, Format::SpanCsv]);
}

#[test]
fn gzip_input_reads_like_plain_input() {
    let shop = webshop();
    let traces: Vec<&[Span]> = shop.traces.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, writer) in writers() {
        let plain = dir.path().join(name);
        let gz = dir.path().join(format!("{name}.gz"));
        write_file(&plain, writer, &traces, &shop.names);
        write_file(&gz, writer, &traces, &shop.names);
        let (p, g) = (read(&plain), read(&gz));
        assert_eq!(p.read.files[0].1, g.read.files[0].1, "{name}: format");
        assert_eq!(g.summary.traces, 300, "{name}.gz");
        assert_eq!(g.summary.spans, shop.span_count() as u64, "{name}.gz");
        assert_eq!(g.summary_without_files(), p.summary_without_files(), "{name}.gz");
        assert_eq!(g.shapes(), p.shapes(), "{name}.gz");
    }
}

#[test]
fn a_directory_reads_every_trace_file_in_it_sorted() {
    let shop = webshop();
    let traces: Vec<&[Span]> = shop.traces.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let [otlp, _, zipkin, csv] = writers();
    // A third of the requests in each of three formats, one of them gzipped;
    // names chosen so sorted order differs from writing order.
    write_file(&dir.path().join("b.csv.gz"), csv.1, &traces[..100], &shop.names);
    write_file(&dir.path().join("c.json"), zipkin.1, &traces[100..200], &shop.names);
    write_file(&dir.path().join("a.jsonl"), otlp.1, &traces[200..], &shop.names);
    // Not trace files: skipped.
    std::fs::write(dir.path().join("notes.txt"), "not traces").unwrap();
    std::fs::write(dir.path().join(".hidden.csv"), "garbage").unwrap();

    let whole = dir.path().join("whole");
    std::fs::create_dir(&whole).unwrap();
    let whole_file = whole.join("all.jsonl");
    write_file(&whole_file, otlp.1, &traces, &shop.names);

    let r = read_with(&[dir.path().to_path_buf()], &ReadOptions::default());
    let files: Vec<(String, Format)> =
        r.read.files.iter().map(|(p, f)| (p.file_name().unwrap().to_string_lossy().into_owned(), *f)).collect();
    assert_eq!(
        files,
        [
            ("a.jsonl".to_string(), Format::Otlp),
            ("b.csv.gz".to_string(), Format::SpanCsv),
            ("c.json".to_string(), Format::Zipkin),
        ]
    );
    assert_eq!(r.summary.traces, 300);
    assert_eq!(r.summary.spans, shop.span_count() as u64);
    let one = read(&whole_file);
    assert_eq!(r.summary_without_files(), one.summary_without_files());
    assert_eq!(r.shapes(), one.shapes());
}

#[test]
fn web_shop_structure_is_recovered() {
    let shop = webshop();
    let traces: Vec<&[Span]> = shop.traces.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("webshop.otlp.jsonl");
    write_file(&path, writers()[0].1, &traces, &shop.names);
    let r = read(&path);
    assert_one_execution_per_server_span(&shop, &r);
    assert_calls_and_roots_are_the_specs(&r);
    assert_call_orders_are_the_specs(&r);
}

/// One execution per SERVER span, per trace and in total; client spans fold
/// into their call.
fn assert_one_execution_per_server_span(shop: &Traces, r: &Read) {
    let servers = count_kind(shop, SpanKind::Server);
    let clients = count_kind(shop, SpanKind::Client);
    assert_eq!(servers + clients, shop.span_count() as u64);
    let execs: u64 = r.trees.iter().map(|t| t.execs.len() as u64).sum();
    assert_eq!(execs, servers);
    assert_eq!(r.summary.folded_client_spans, clients);
    assert_eq!(r.summary.adopted_calls, 0);
    let by_id: BTreeMap<String, &Vec<Span>> = shop.traces.iter().map(|t| (t[0].trace_id.to_string(), t)).collect();
    for tree in &r.trees {
        let spans = by_id[&tree.trace_id.to_string()];
        let servers = spans.iter().filter(|s| s.kind == SpanKind::Server).count();
        assert_eq!(tree.execs.len(), servers, "trace {}", tree.trace_id);
        assert_eq!(tree.span_count as usize, spans.len(), "trace {}", tree.trace_id);
    }
}

/// Exactly the calls the spec makes, all across services, and its four roots.
fn assert_calls_and_roots_are_the_specs(r: &Read) {
    let expected: BTreeSet<(String, String, EdgeKind)> =
        spec_edges(&examples::webshop()).into_iter().map(|(a, b)| (a, b, EdgeKind::Rpc)).collect();
    let edges = r.edges();
    assert!(edges.contains(&("checkout PlaceOrder".into(), "payment Card".into(), EdgeKind::Rpc)));
    assert_eq!(edges, expected);
    assert_eq!(r.summary.edges, 41);
    let roots: BTreeSet<String> =
        r.summary.root_apis.iter().map(|a| format!("{} {}", a.service, a.operation)).collect();
    assert_eq!(
        roots,
        BTreeSet::from([
            "frontend GET /".to_string(),
            "frontend GET /product".to_string(),
            "frontend POST /cart".to_string(),
            "frontend POST /checkout".to_string(),
        ])
    );
    assert_eq!(r.summary.depth.max, 4, "frontend → checkout → email → notification");
}

/// The home page's and checkout's calls come in the spec's order and
/// concurrency, only checkout's inventory check locks stock, and only the
/// email is fire-and-forget.
fn assert_call_orders_are_the_specs(r: &Read) {
    let mut home_pages = 0;
    let mut checkouts = 0;
    let mut mysql_updates = 0;
    for t in &r.trees {
        for (i, e) in t.execs.iter().enumerate() {
            let api = r.api(t, i);
            let calls: Vec<String> = e.children().map(|c| r.api(t, c)).collect();
            let kids = t.children(i);
            match api.as_str() {
                "frontend GET /" => {
                    home_pages += 1;
                    assert_home_page_calls(&calls, kids);
                }
                "checkout PlaceOrder" => {
                    checkouts += 1;
                    assert_place_order_calls(e, &calls, kids);
                }
                // Only checkout's inventory check locks stock.
                "mysql UPDATE" => {
                    mysql_updates += 1;
                    let inv = e.parent as usize;
                    assert_eq!(r.api(t, inv), "inventory Check");
                    assert_eq!(r.api(t, t.execs[inv].parent as usize), "checkout PlaceOrder");
                }
                _ => {}
            }
            // Only the email is fire-and-forget; every other call is waited for.
            assert_eq!(e.detached, api == "email Confirm", "{api}");
        }
    }
    assert_eq!(mysql_updates, checkouts);
    assert!(home_pages > 0 && checkouts > 0, "{home_pages} {checkouts}");
}

/// `frontend GET /`: session, then ads ∥ recommendation ∥ catalog, then currency.
fn assert_home_page_calls(calls: &[String], kids: &[Exec]) {
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(calls[0], "session Get");
    let mut middle = calls[1..4].to_vec();
    middle.sort();
    assert_eq!(middle, ["ads List", "catalog List", "recommendation List"]);
    assert_eq!(calls[4], "currency Convert");
    let par = &kids[1..4];
    assert_concurrent(par);
    let earliest_start = par.iter().map(|c| c.call_start_ns).min().unwrap();
    assert!(kids[0].call_end_ns() <= earliest_start, "session comes first");
    let last_end = par.iter().map(|c| c.call_end_ns()).max().unwrap();
    assert!(kids[4].call_start_ns >= last_end, "currency waits for all three");
}

/// Calls made in parallel overlap: the last starts before the first ends.
fn assert_concurrent(par: &[Exec]) {
    let latest_start = par.iter().map(|c| c.call_start_ns).max().unwrap();
    let earliest_end = par.iter().map(|c| c.call_end_ns()).min().unwrap();
    assert!(latest_start < earliest_end, "concurrent calls overlap");
}

/// `checkout PlaceOrder`: cart, inventory ∥ shipping ∥ pricing, fraud,
/// payment, shipping ∥ cart, email.
fn assert_place_order_calls(e: &Exec, calls: &[String], kids: &[Exec]) {
    assert_eq!(calls.len(), 9, "{calls:?}");
    let par = &kids[1..4];
    assert_concurrent(par);
    assert_eq!(calls[8], "email Confirm");
    assert!(kids[8].detached, "email is fire-and-forget");
    // The caller does not wait for it: it ends before email does.
    assert!(e.end_ns() < kids[8].end_ns());
}

#[test]
fn figure1_has_two_roots_sharing_one_service() {
    let fig = system::generate(&examples::figure1(), 200, 7);
    let traces: Vec<&[Span]> = fig.traces.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("figure1.jaeger.json");
    write_file(&path, writers()[1].1, &traces, &fig.names);
    let r = read(&path);
    let s = &r.summary;
    assert_eq!((s.traces, s.services, s.apis, s.root_apis.len()), (200, 3, 3, 2));
    assert_eq!(s.root_apis.iter().map(|a| a.count).sum::<u64>(), 200);
    assert_eq!(s.spans, 200 * 3, "A or C, its client span for B, and B");
    assert_eq!(s.folded_client_spans, 200);
    assert_eq!(
        r.edges(),
        BTreeSet::from([
            ("A a".to_string(), "B b".to_string(), EdgeKind::Rpc),
            ("C c".to_string(), "B b".to_string(), EdgeKind::Rpc),
        ])
    );
    // B does ~10× the work when C calls it (medians 2 ms and 20 ms).
    let mut b_by_caller: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in &r.trees {
        assert_eq!(t.execs.len(), 2);
        b_by_caller.entry(r.api(t, 0)).or_default().push(t.execs[1].duration_ns);
    }
    let median = |v: &mut Vec<i64>| {
        v.sort();
        v[v.len() / 2] as f64
    };
    let from_a = median(b_by_caller.get_mut("A a").unwrap());
    let from_c = median(b_by_caller.get_mut("C c").unwrap());
    let ratio = from_c / from_a;
    assert!((7.0..14.0).contains(&ratio), "B(C)/B(A) = {ratio}");
}

/// The TrainTicket gateway's shape (hand-written fixture in the CLI tests):
/// the call the handler makes is adopted by it.
#[test]
fn wrapper_adoption_reparents_the_call_under_the_handler() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/data/good/spancsv/gateway_wrapper.csv");
    let callee = "ts-execute-service /api/v1/executeservice/execute/execute/{orderId}";
    let caller_of_callee = |r: &Read| -> Vec<String> {
        r.trees
            .iter()
            .flat_map(|t| {
                (0..t.execs.len())
                    .filter(|&i| r.api(t, i) == callee)
                    .map(|i| r.api(t, t.execs[i].parent as usize))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let adopted = read(&fixture);
    assert_eq!(adopted.summary.adopted_calls, 1);
    // First trace: contained, adopted. Second: the call outlives the
    // handler by 3 ms, beyond the tolerance, and stays where it is.
    assert_eq!(caller_of_callee(&adopted), ["ts-gateway-service FilteringWebHandler.handle", "ts-gateway-service /*"]);
    let mut opts = ReadOptions::default();
    opts.assemble.adopt = false;
    let kept = read_with(&[fixture], &opts);
    assert_eq!(kept.summary.adopted_calls, 0);
    assert_eq!(caller_of_callee(&kept), ["ts-gateway-service /*", "ts-gateway-service /*"]);
}
