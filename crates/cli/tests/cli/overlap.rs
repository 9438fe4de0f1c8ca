//! `palette fit` on inputs that do not belong together: the same traces in
//! two files, or systems that share no service, are fitted as asked but
//! warned about on one stderr line per problem; the exit code stays 0.

use std::path::Path;

use crate::util::*;

/// `palette example` (small) into `dir/example`.
fn example(dir: &Dir) -> std::path::PathBuf {
    let out = dir.path("example");
    let run = palette(["example".as_ref(), "-o".as_ref(), out.as_os_str(), "--traces".as_ref(), "100".as_ref()]);
    assert_eq!(run.code, 0, "palette example failed: {}", run.stderr);
    out
}

/// `palette fit INPUT -o OUT`; asserts it succeeded and returns the warning lines.
fn fit_warnings(input: &Path, out: &Path) -> Vec<String> {
    let run = palette(["fit".as_ref(), input.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.code, 0, "palette fit {} failed:\n{}", input.display(), run.stderr);
    assert!(out.is_file(), "no model written");
    run.stderr.lines().filter(|l| l.starts_with("palette: warning: ")).map(str::to_string).collect()
}

#[test]
fn fit_warns_about_the_same_traces_in_two_files_and_goes_on() {
    let dir = Dir::new();
    let ex = example(&dir);
    let two = dir.path("two");
    std::fs::create_dir(&two).unwrap();
    for name in ["webshop.jaeger.json", "webshop.otlp.jsonl"] {
        std::fs::copy(ex.join(name), two.join(name)).unwrap();
    }
    let warnings = fit_warnings(&two, &dir.path("m.json"));
    let (a, b) = (two.join("webshop.jaeger.json"), two.join("webshop.otlp.jsonl"));
    assert_eq!(
        warnings,
        [format!(
            "palette: warning: {} and {} share 100 trace ids (the same traces in two files?); they are fitted as one input",
            a.display(),
            b.display()
        )]
    );
}

#[test]
fn fit_of_the_example_directory_names_every_problem_once() {
    let dir = Dir::new();
    let ex = example(&dir);
    let warnings = fit_warnings(&ex, &dir.path("m.json"));
    let shared: Vec<&String> = warnings.iter().filter(|w| w.contains(" trace ids ")).collect();
    let disjoint: Vec<&String> = warnings.iter().filter(|w| w.contains(" no service ")).collect();
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    // The web shop's four formats against the first of them, and the two
    // Alibaba schemas of the same calls.
    assert_eq!(shared.len(), 4, "{warnings:#?}");
    assert!(shared.iter().any(|w| w.contains("alibaba-v2021.csv and ") && w.contains("alibaba-v2022.csv share")));
    for other in ["webshop.otlp.jsonl", "webshop.spans.csv", "webshop.zipkin.json"] {
        let line = format!("webshop.jaeger.json and {} share 100 trace ids", ex.join(other).display());
        assert!(shared.iter().any(|w| w.contains(&line)), "{line} in {warnings:#?}");
    }
    // Figure 1 and the Alibaba calls are other systems than the web shop.
    assert_eq!(disjoint.len(), 2, "{warnings:#?}");
    let figure1 =
        format!("warning: {} shares no service with the other inputs (", ex.join("figure1.otlp.jsonl").display());
    assert!(disjoint.iter().any(|w| w.contains(&figure1)), "{warnings:#?}");
    assert!(disjoint.iter().all(|w| w.ends_with("): unrelated systems are fitted as one")), "{warnings:#?}");
}

#[test]
fn fit_of_two_halves_of_one_system_says_nothing() {
    let dir = Dir::new();
    let ex = example(&dir);
    // One OTLP document per trace and line: halves hold different traces.
    let text = std::fs::read_to_string(ex.join("webshop.otlp.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let halves = dir.path("halves");
    std::fs::create_dir(&halves).unwrap();
    std::fs::write(halves.join("a.jsonl"), lines[..50].join("\n")).unwrap();
    std::fs::write(halves.join("b.jsonl"), lines[50..].join("\n")).unwrap();
    assert_eq!(fit_warnings(&halves, &dir.path("m.json")), Vec::<String>::new());
}
