//! Helpers: the Figure-1 model, free ports, SKIP messages.

use std::net::TcpListener;
use std::sync::OnceLock;

use palette_model::{FilterNames, FitOptions, Fitter, Model, ModelKind, TraceFilter, build_model};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};

/// The model of the paper's Figure-1 system (A and C call B), fitted from
/// the ground-truth generator's traces as `palette fit` would.
pub fn figure1_model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("figure1.otlp.jsonl");
            let t = palette_testkit::system::generate(&palette_testkit::examples::figure1(), 200, 1);
            let file = std::fs::File::create(&path).expect("create traces");
            palette_trace::write::write_otlp_lines(file, t.traces.iter().map(Vec::as_slice), &t.names)
                .expect("write traces");
            let mut fitter = Fitter::new(FitOptions::default(), TraceFilter::default());
            let names = FilterNames::default();
            let mut sink = |tree: &CallTree| {
                fitter.add(tree, &names);
                Ok(())
            };
            let read = read_traces(&[path], &ReadOptions::default(), &NoProgress, &mut sink).expect("read traces");
            let partial = fitter.into_partial(&read.names, vec!["figure1.otlp.jsonl".into()]);
            build_model(&partial, ModelKind::Palette, 1)
        })
        .clone()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Says on the real stderr (visible in passing runs) why a check is skipped.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}
