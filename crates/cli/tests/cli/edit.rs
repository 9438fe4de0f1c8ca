//! `palette edit`, `--apply` on `fit` and `generate`, and `show --diff`.

use std::path::PathBuf;

use palette_model::Model;

use crate::util::*;

fn shop(dir: &Dir) -> PathBuf {
    dir.write("model.json", palette_model::intervene::tests_support::shop().to_json())
}

fn load(path: &std::path::Path) -> Model {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn edit_applies_a_file_and_never_touches_the_input() {
    let dir = Dir::new();
    let model = shop(&dir);
    let before = std::fs::read(&model).unwrap();
    let file = dir.write(
        "whatif.yaml",
        "- remove: { service: email, keep_latency: true }\n- delay: { into: cart, add_ms: 245 }\n\
         - scale_latency: { service: frontend, factor: 0.5 }\n- work: { mode: cpu }\n- rpc: grpc\n",
    );
    let out = dir.path("edited.json");
    let run = palette([
        "edit".as_ref(),
        model.as_os_str(),
        "--apply".as_ref(),
        file.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("applied 5 interventions: 3 → 2 services"), "{}", run.stderr);
    assert_eq!(std::fs::read(&model).unwrap(), before, "the input is untouched");
    let edited = load(&out);
    assert_eq!(edited.services, ["cart", "frontend"]);
    assert_eq!(edited.provenance.interventions.len(), 5);
    assert_eq!(edited.deploy.rpc.as_deref(), Some("grpc"));

    let diff = palette(["show".as_ref(), "--diff".as_ref(), model.as_os_str(), out.as_os_str()]);
    assert_eq!(diff.code, 0, "{}", diff.stderr);
    for want in [
        "- service email",
        "- API email send",
        "call overhead",
        "local work",
        "deploy",
        "intervention {\"rpc\":\"grpc\"}",
    ] {
        assert!(diff.stdout.contains(want), "`{want}` missing from:\n{}", diff.stdout);
    }
    let same = palette(["show".as_ref(), "--diff".as_ref(), model.as_os_str(), model.as_os_str()]);
    assert!(same.stdout.contains("no differences"), "{}", same.stdout);

    // -o the input itself is refused.
    let run = palette([
        "edit".as_ref(),
        model.as_os_str(),
        "--downscale".as_ref(),
        "2".as_ref(),
        "-o".as_ref(),
        model.as_os_str(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn edit_flags() {
    let dir = Dir::new();
    let model = shop(&dir);
    let out = dir.path("small.json");
    let run = palette([
        "edit".as_ref(),
        model.as_os_str(),
        "--downscale".as_ref(),
        "2".as_ref(),
        "--delay".as_ref(),
        "cart=2ms".as_ref(),
        "--work".as_ref(),
        "memory".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = load(&out);
    assert_eq!(m.services, ["cart", "frontend"]);
    assert_eq!(m.deploy.work[0].mode.name(), "memory");
    let run = palette([
        "edit".as_ref(),
        model.as_os_str(),
        "--delay".as_ref(),
        "cart".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = palette(["edit".as_ref(), model.as_os_str(), "-o".as_ref(), dir.path("x.json").as_os_str()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nothing to do"), "{}", run.stderr);
}

#[test]
fn invalid_intervention_files_name_the_entry_and_write_nothing() {
    let dir = Dir::new();
    let model = shop(&dir);
    let cases: &[(&str, i32, &str)] = &[
        ("- remove: { service: nope }\n", 2, "line 1: entry 0 (remove): unknown service `nope`"),
        (
            "- work: { mode: cpu }\n- scale_latency: { service: cart, factor: -2 }\n",
            2,
            "line 2: entry 1 (scale_latency): `factor` must be a number > 0",
        ),
        ("- downscale: { services: 0 }\n", 2, "entry 0 (downscale): cannot downscale to 0 services"),
        ("- delay: { into: cart, add_ms: 5\n", 65, "not valid YAML"),
        ("- explode: { service: cart }\n", 65, ":1: entry 0 (explode): unknown variant `explode`"),
        ("- delay: { into: cart, add_ms: soon }\n", 65, "entry 0 (delay): invalid type"),
        ("- delay: { into: cart, add_ms: 5, colour: red }\n", 65, "entry 0 (delay): unknown field `colour`"),
        ("remove: { service: cart }\n", 65, "expected a list of interventions"),
        ("- filter: { drop_errors: true }\n", 2, "entry 0 (filter): a filter selects traces"),
        ("- remove: { api: cart nothing }\n", 2, "unknown API `cart nothing`"),
        (
            "- add: { caller: cart get, callee: db q, probability: 2, work_ms: 1 }\n",
            2,
            "`probability` must be in (0, 1]",
        ),
        ("- replicate: { service: cart, instances: 0 }\n", 2, "`instances` must be at least 1"),
        ("- remove: { service: frontend }\n", 2, "every root API"),
        ("- rpc: carrier-pigeon\n", 65, "entry 0 (rpc): unknown variant `carrier-pigeon`"),
        ("- tracing: { sample_rate: 1.5 }\n", 2, "entry 0 (tracing): `sample_rate` 1.5 is not between 0 and 1"),
        ("- remove: { service: cart }\n  delay: { into: cart, add_ms: 1 }\n", 65, "one intervention per entry"),
        (
            "- delay: { into: cart, add_ms: 1 }\n- remove: { edge: { caller: cart get, callee: email send } }\n",
            2,
            "line 2: entry 1 (remove): there is no edge",
        ),
    ];
    for (i, (text, code, want)) in cases.iter().enumerate() {
        let file = dir.write(&format!("bad{i}.yaml"), text);
        let out = dir.path(&format!("out{i}.json"));
        let run = palette([
            "edit".as_ref(),
            model.as_os_str(),
            "--apply".as_ref(),
            file.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(run.code, *code, "case {i} {text:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "case {i}: `{want}` not in {}", run.stderr);
        assert!(run.stderr.contains(&format!("bad{i}.yaml")), "case {i} names the file: {}", run.stderr);
        assert!(!out.exists(), "case {i} wrote {}", out.display());
    }
}

#[test]
fn fit_and_generate_apply_interventions() {
    let dir = Dir::new();
    let model = shop(&dir);
    let traces = dir.path("traces.jsonl");
    let run = palette([
        "simulate".as_ref(),
        model.as_os_str(),
        "-n".as_ref(),
        "300".as_ref(),
        "-o".as_ref(),
        traces.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let file = dir.write("fit.yaml", "- filter: { exclude_services: [email] }\n- delay: { into: cart, add_ms: 3 }\n");
    let fitted = dir.path("fitted.json");
    let run = palette([
        "fit".as_ref(),
        traces.as_os_str(),
        "--apply".as_ref(),
        file.as_os_str(),
        "-o".as_ref(),
        fitted.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let m = load(&fitted);
    assert_eq!(m.services, ["cart", "frontend"], "the filter dropped email");
    assert_eq!(m.provenance.interventions.len(), 2);

    let gen_file = dir.write(
        "gen.yaml",
        "- work: { mode: cpu }\n- work: { mode: memory, service: cart }\n- tracing: { sample_rate: 0.1 }\n",
    );
    let sys = dir.path("sys");
    let run = palette([
        "generate".as_ref(),
        fitted.as_os_str(),
        "--apply".as_ref(),
        gen_file.as_os_str(),
        "-o".as_ref(),
        sys.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sys.join("system.json")).unwrap()).unwrap();
    assert_eq!(cfg["work"]["mode"], "cpu");
    assert_eq!(cfg["work"]["services"]["cart"], "memory");
    assert_eq!(cfg["tracing"]["sample_rate"], 0.1);

    let grpc = dir.write("grpc.yaml", "- rpc: grpc\n");
    let run = palette([
        "generate".as_ref(),
        fitted.as_os_str(),
        "--apply".as_ref(),
        grpc.as_os_str(),
        "-o".as_ref(),
        dir.path("g").as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "gRPC systems are served: {}", run.stderr);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("g/system.json")).unwrap()).unwrap();
    assert_eq!(cfg["rpc"], "grpc");
}
