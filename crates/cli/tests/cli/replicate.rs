//! The `replicate` intervention end to end, as a user runs it: `palette
//! edit --apply` a replicate file, `palette generate`, `palette up` (a
//! process per instance, and packed), `palette load` — every request 200,
//! the calls spread over every instance (spans name their instance).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Dir, Up, free_ports, palette, wait_until_up};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// SERVER spans per (service, instance id) in a span file.
fn served(spans: &Path) -> BTreeMap<(String, String), usize> {
    let mut by = BTreeMap::new();
    for line in std::fs::read_to_string(spans).unwrap().lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in doc["resourceSpans"].as_array().unwrap() {
            let attr = |k: &str| {
                rs["resource"]["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["key"] == k)
                    .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
            };
            let key = (attr("service.name").unwrap(), attr("service.instance.id").unwrap_or_default());
            let n = rs["scopeSpans"][0]["spans"].as_array().unwrap().iter().filter(|s| s["kind"] == 2).count();
            *by.entry(key).or_insert(0) += n;
        }
    }
    by
}

#[test]
fn a_replicated_service_runs_its_instances_and_shares_the_calls() {
    let dir = Dir::new();
    let ex = dir.path("ex");
    assert_eq!(palette(["example", "-o", s(&ex)]).code, 0);
    let model = dir.path("m.json");
    let fit = palette(["fit", s(&ex.join("figure1.otlp.jsonl")), "-o", s(&model)]);
    assert_eq!(fit.code, 0, "{}", fit.stderr);
    // B is called by the root A; A is the root, so `palette load` spreads its requests too.
    let edit = dir.write(
        "replicate.yaml",
        "- replicate: { service: B, instances: 3 }\n- replicate: { service: A, instances: 2 }\n",
    );
    let edited = dir.path("e.json");
    let run = palette(["edit", s(&model), "--apply", s(&edit), "-o", s(&edited)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Too many instances is refused at the edit (a usage error, as an unknown service is), naming the entry.
    let bad = dir.write("bad.yaml", "- replicate: { service: B, instances: 1000 }\n");
    let run = palette(["edit", s(&model), "--apply", s(&bad), "-o", s(&dir.path("bad.json"))]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("line 1: entry 0 (replicate): `instances` 1000 is more than 64"), "{}", run.stderr);

    for packed in [false, true] {
        // A: 2 ports, B: 3, C: 1.
        let base = free_ports(6);
        let sys = dir.path(&format!("sys-{packed}"));
        let run = palette(["generate", s(&edited), "-o", s(&sys), "--base-port", &base.to_string()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.stderr.contains("warning"), "replicas are real, nothing to warn about: {}", run.stderr);
        assert!(run.stdout.contains(&format!("(ports {base}-{})", base + 5)), "{}", run.stdout);

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_palette"));
        cmd.args(["up", s(&sys)]).stdout(Stdio::piped()).stderr(Stdio::piped());
        if packed {
            cmd.arg("--packed");
        }
        let mut up = cmd.spawn().expect("start palette up");
        let Up { shown, rest: _lines } = wait_until_up(&mut up, Duration::from_secs(60));
        let processes = if packed { "1 process," } else { "6 processes," };
        assert!(shown.contains(&format!("3 services in {processes} all healthy")), "{shown}");
        assert!(shown.contains(&format!("B (instance 2)  http://127.0.0.1:{}", base + 4)), "{shown}");

        let load = palette(["load", s(&sys), "--rate", "150", "--duration", "2s", "--warmup", "0s", "--json"]);
        let kill = Command::new("kill").args(["-TERM", &up.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = up.wait().unwrap();
        let mut err = String::new();
        let _ = up.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(load.code, 0, "{}\n{err}", load.stderr);
        assert_eq!(status.code(), Some(143), "{err}");
        let v: serde_json::Value = serde_json::from_str(&load.stdout).expect("JSON");
        let requests = v["total"]["requests"].as_u64().unwrap();
        assert!(requests >= 200, "{v}");
        assert_eq!(v["total"]["ok"].as_u64(), Some(requests), "every request is a 200: {v}");

        let by = served(&sys.join("spans.jsonl"));
        let of = |service: &str| -> Vec<usize> {
            by.iter().filter(|((s, _), _)| s == service).map(|(_, &n)| n).collect::<Vec<_>>()
        };
        let (a, b) = (of("A"), of("B"));
        assert_eq!(a.len(), 2, "root requests reach both instances of A: {by:?}");
        assert_eq!(b.len(), 3, "calls reach all three instances of B: {by:?}");
        assert!(by.contains_key(&("B".into(), "b-2".into())), "instance ids are HOST-i: {by:?}");
        // Round robin per call: even within a few calls (more than that
        // would be concurrent calls racing for their turns).
        for n in [a, b] {
            let (lo, hi) = (n.iter().min().unwrap(), n.iter().max().unwrap());
            assert!(*lo > 0 && hi - lo <= hi / 5 + 3, "spread evenly: {by:?}");
        }
        assert_eq!(of("C").len(), 1, "an unreplicated service has no instance id: {by:?}");
    }
}
