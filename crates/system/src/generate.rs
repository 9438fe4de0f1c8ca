//! `palette generate`: a deployable system from a model.
//!
//! [`generate`] turns a model into the files of a system directory —
//! `system.json` (what every service process loads), `compose.yaml`,
//! `k8s/`, a `Dockerfile` and a `README.md` — as text in memory, so tests
//! can snapshot them; [`write_dir`] puts them on disk atomically. Every
//! file is a pure function of the model and the options: the same inputs
//! give the same bytes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use palette_model::Model;
use palette_spec::config::{
    ConfigError, Limits, RpcMode, SYSTEM_FORMAT, ServiceConfig, SystemConfig, TracingConfig, WorkConfig, WorkMode,
};

use crate::{compose, dockerfile, k8s, readme};

/// The most a ConfigMap may hold (Kubernetes rejects bigger ones).
pub const CONFIGMAP_MAX_BYTES: usize = 1 << 20;

/// Names the generated files use for themselves, which services must not take.
const RESERVED_HOSTS: &[&str] = &["load"];

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// The system's name: compose project, Kubernetes namespace, and how the
    /// README refers to it. Must be a DNS label starting with a letter.
    pub name: String,
    /// Seeds every random choice the services make.
    pub seed: u64,
    /// The first service's port; service `i` listens on `base_port + i`.
    pub base_port: u16,
    /// How services spend their sampled local work.
    pub work: WorkMode,
    /// Also export spans over OTLP/HTTP to this collector.
    pub otlp_endpoint: Option<String>,
    /// The container image compose and Kubernetes run (built by the Dockerfile).
    pub image: String,
    /// Also write the services as Rust under `code/` (see [`crate::code`]).
    pub code: Option<crate::code::CodeOptions>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            name: "palette".into(),
            seed: 1,
            base_port: 7000,
            work: WorkMode::Sleep,
            otlp_endpoint: None,
            image: DEFAULT_IMAGE.into(),
            code: None,
        }
    }
}

/// The image tag the README's `docker build` writes.
pub const DEFAULT_IMAGE: &str = "palette:latest";

/// One generated file.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedFile {
    /// Relative to the system directory, `/`-separated.
    pub path: String,
    pub content: String,
}

/// A generated system, still in memory.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The parsed `system.json`, for callers that go on to run it.
    pub config: SystemConfig,
    /// Every file, in a fixed order.
    pub files: Vec<GeneratedFile>,
    /// Things the user should know that do not stop generation (a ConfigMap
    /// too big for Kubernetes, limits raised to fit the model).
    pub warnings: Vec<String>,
}

impl Generated {
    /// The content of the file at `path`.
    pub fn file(&self, path: &str) -> Option<&str> {
        self.files.iter().find(|f| f.path == path).map(|f| f.content.as_str())
    }
}

/// Why a system cannot be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("system name `{0}` is not a DNS label (a-z, 0-9 and '-', starting with a letter, at most 63); try `{1}`")]
    BadName(String, String),
    #[error("--base-port {first} gives {services} services the ports {first}..={last}; ports must be 1 to 65535")]
    PortRange { first: u32, last: u32, services: usize },
    #[error("OTLP endpoint `{0}` is not an http:// URL (e.g. http://collector:4318/v1/traces)")]
    BadEndpoint(String),
    #[error("image `{0}` is not an image reference (no spaces, not empty)")]
    BadImage(String),
    #[error("the model has no APIs: there is nothing to serve")]
    EmptyModel,
    #[error("service name `{0}` holds a NUL character, which no command line can carry: rename it in the traces")]
    NulInName(String),
    #[error("{0} is not empty; pass --force to overwrite the generated files in it")]
    NotEmpty(PathBuf),
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Code(crate::code::CodeError),
    /// The generated `system.json` failed its own checks: a bug, not bad input.
    #[error("generated system.json does not load: {0}")]
    Config(ConfigError),
}

impl GenerateError {
    /// A bad flag or target (exit 2), as opposed to bad data or a failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            GenerateError::BadName(..)
                | GenerateError::PortRange { .. }
                | GenerateError::BadEndpoint(_)
                | GenerateError::BadImage(_)
                | GenerateError::NotEmpty(_)
                | GenerateError::NotADirectory(_)
        )
    }

    /// The model cannot make a system (exit 65).
    pub fn is_bad_data(&self) -> bool {
        matches!(self, GenerateError::EmptyModel | GenerateError::NulInName(_) | GenerateError::Code(_))
    }
}

impl palette_trace::failure::Classify for GenerateError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        use palette_trace::failure::FailureKind;
        if self.is_bad_data() {
            FailureKind::BadData
        } else if self.is_usage() {
            FailureKind::Usage
        } else {
            FailureKind::Runtime
        }
    }
}

/// Generates every file of a system for `model`.
pub fn generate(model: Model, opts: &GenerateOptions) -> Result<Generated, GenerateError> {
    if !is_dns1035_label(&opts.name) {
        return Err(GenerateError::BadName(opts.name.clone(), dns_label(&opts.name)));
    }
    if opts.image.is_empty() || opts.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(GenerateError::BadImage(opts.image.clone()));
    }
    if let Some(url) = &opts.otlp_endpoint {
        let host = url.strip_prefix("http://").unwrap_or("");
        if host.is_empty() || host.starts_with('/') || url.chars().any(char::is_whitespace) {
            return Err(GenerateError::BadEndpoint(url.clone()));
        }
    }
    if model.apis.is_empty() {
        return Err(GenerateError::EmptyModel);
    }
    // `palette up` passes each service's name to `palette serve --service=`.
    if let Some(name) = model.services.iter().find(|n| n.contains('\0')) {
        return Err(GenerateError::NulInName(name.escape_debug().to_string()));
    }
    // Services with no API of their own serve nothing; the model lists
    // services from the APIs, so every one has at least one.
    let names: Vec<String> = model.services.clone();
    // A replicated service takes a port per instance (`port + i` locally),
    // so the ports stay one contiguous range from --base-port.
    let instances: Vec<u32> = names.iter().map(|n| model.deploy.replicas.get(n).copied().unwrap_or(1).max(1)).collect();
    let first = u32::from(opts.base_port);
    let last = first + instances.iter().sum::<u32>() - 1;
    if opts.base_port == 0 || last > u32::from(u16::MAX) {
        return Err(GenerateError::PortRange { first, last, services: names.len() });
    }
    let hosts = dns_labels(&names, RESERVED_HOSTS);
    let mut next_port = first;
    let services: Vec<ServiceConfig> = names
        .iter()
        .zip(&hosts)
        .zip(&instances)
        .map(|((name, host), &n)| {
            let port = next_port as u16;
            next_port += n;
            ServiceConfig {
                name: name.clone(),
                host: host.clone(),
                port,
                instances: n,
                apis: (0..model.apis.len() as u32).filter(|&a| model.apis[a as usize].service == *name).collect(),
            }
        })
        .collect();

    let mut warnings = Vec::new();
    let limits = limits_for(&model, &mut warnings);
    let (work, rpc) = recorded_deploy(&model, opts.work, &mut warnings);
    let sample_rate = model.deploy.sample_rate.unwrap_or(1.0);
    let config = SystemConfig {
        format: SYSTEM_FORMAT.into(),
        name: opts.name.clone(),
        seed: opts.seed,
        rpc,
        work,
        tracing: TracingConfig { otlp_endpoint: opts.otlp_endpoint.clone(), sample_rate, ..Default::default() },
        limits,
        services,
        model,
    };
    let system_json = yaml_safe_json(&config.to_json());
    // What every service will do with the file: fail here, not in a container.
    let config = SystemConfig::parse(&system_json, Path::new("system.json")).map_err(GenerateError::Config)?;

    let configmap = k8s::configmap(&config, &system_json);
    let too_big = configmap.len() > CONFIGMAP_MAX_BYTES;
    let source = if too_big {
        let image = k8s::system_image(&opts.image, &opts.name);
        warnings.push(format!(
            "system.json makes a {}-byte ConfigMap, more than the 1 MiB a ConfigMap holds: k8s/ runs it from \
             the image `{image}` built by Dockerfile.system instead; see README.md (\"Run it on Kubernetes\")",
            configmap.len()
        ));
        k8s::Source::Baked(image)
    } else {
        k8s::Source::ConfigMap
    };

    let mut files = vec![
        GeneratedFile { path: "system.json".into(), content: system_json },
        GeneratedFile { path: "compose.yaml".into(), content: compose::render(&config, opts) },
        GeneratedFile { path: ".env".into(), content: compose::env(&config) },
        GeneratedFile { path: "Dockerfile".into(), content: dockerfile::render() },
        GeneratedFile { path: "Dockerfile.dockerignore".into(), content: dockerfile::dockerignore() },
    ];
    if too_big {
        files.push(GeneratedFile { path: "Dockerfile.system".into(), content: dockerfile::render_system(&opts.image) });
    }
    files.push(GeneratedFile { path: "k8s/namespace.yaml".into(), content: k8s::namespace(&config) });
    if !too_big {
        files.push(GeneratedFile { path: "k8s/configmap.yaml".into(), content: configmap });
    }
    for s in &config.services {
        files.push(GeneratedFile {
            path: format!("k8s/services/{}.yaml", s.host),
            content: k8s::service(&config, s, opts, &source),
        });
    }
    files.push(GeneratedFile { path: "k8s/load-job.yaml".into(), content: k8s::load_job(&config, opts, &source) });
    files.push(GeneratedFile { path: "README.md".into(), content: readme::render(&config, opts, &source) });
    if let Some(code) = &opts.code {
        files.extend(crate::code::render(&config.model, &config.name, code).map_err(GenerateError::Code)?);
    }
    Ok(Generated { config, files, warnings })
}

/// The work modes and RPC transport interventions recorded in the model
/// (`model.deploy`), on top of the generator's default work mode.
fn recorded_deploy(model: &Model, default: WorkMode, warnings: &mut Vec<String>) -> (WorkConfig, RpcMode) {
    let mut work = WorkConfig { mode: default, ..Default::default() };
    for rule in &model.deploy.work {
        let mode = rule.mode;
        match (&rule.service, &rule.api) {
            (_, Some(api)) => {
                work.apis.insert(api.clone(), mode);
            }
            (Some(service), None) => {
                work.apis.retain(|k, _| k.split_once(' ').is_none_or(|(s, _)| s != service));
                work.services.insert(service.clone(), mode);
            }
            (None, None) => work = WorkConfig { mode, ..Default::default() },
        }
    }
    // The loader's check refuses any other name; a model built in code
    // with one is warned about rather than silently served over HTTP.
    let rpc = match model.deploy.rpc.as_deref() {
        None => RpcMode::default(),
        Some(name) => RpcMode::from_name(name).unwrap_or_else(|| {
            warnings.push(format!("model.deploy.rpc: unknown transport `{name}`; using http"));
            RpcMode::default()
        }),
    };
    for service in model.deploy.replicas.keys() {
        if !model.services.contains(service) {
            warnings.push(format!("the model asks for instances of `{service}`, which it does not have: ignored"));
        }
    }
    (work, rpc)
}

/// Default limits, raised where the model needs more (a limit the model
/// itself breaks would make every service refuse the file).
fn limits_for(model: &Model, warnings: &mut Vec<String>) -> Limits {
    let mut limits = Limits::default();
    let fan_out = model.apis.iter().flat_map(|a| &a.states).map(|s| s.calls.len()).max().unwrap_or(0) as u32;
    // The longest path an execution can take (a traced run of stages, loops
    // at their longest), so no execution the model describes is cut short.
    let runs = model.apis.iter().map(|a| palette_model::exec::longest_path(&a.states)).max().unwrap_or(0);
    if fan_out > limits.max_fan_out {
        warnings.push(format!(
            "limits.max_fan_out raised from {} to {fan_out}: the model has a stage that wide",
            limits.max_fan_out
        ));
        limits.max_fan_out = fan_out;
    }
    if runs > limits.max_stages {
        warnings.push(format!(
            "limits.max_stages raised from {} to {runs}: the model has an execution that long",
            limits.max_stages
        ));
        limits.max_stages = runs;
    }
    limits
}

/// A DNS label for `name` (RFC 1035: starts with a letter, as Kubernetes
/// Service names must): lower-case, other characters as '-', no leading,
/// trailing or doubled '-', at most 63 characters.
pub fn dns_label(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    if out.is_empty() {
        out.push_str("svc");
    }
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "s-");
    }
    truncate_label(&out, 63)
}

/// Labels for `names`, unique among themselves and `reserved`: a repeat
/// gets `-2`, `-3`, … (cutting the label to keep it within 63).
pub fn dns_labels(names: &[String], reserved: &[&str]) -> Vec<String> {
    let mut taken: BTreeSet<String> = reserved.iter().map(|s| s.to_string()).collect();
    names
        .iter()
        .map(|name| {
            let base = dns_label(name);
            let mut label = base.clone();
            let mut k = 2u32;
            while taken.contains(&label) {
                let suffix = format!("-{k}");
                label = truncate_label(&base, 63 - suffix.len()) + &suffix;
                k += 1;
            }
            taken.insert(label.clone());
            label
        })
        .collect()
}

fn truncate_label(s: &str, max: usize) -> String {
    // Labels are ASCII, so bytes are characters.
    s[..s.len().min(max)].trim_end_matches('-').to_string()
}

/// RFC 1035 label: what a Kubernetes namespace and Service name must be.
pub fn is_dns1035_label(s: &str) -> bool {
    palette_spec::config::is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Escapes what YAML may not hold literally — DEL, C1 controls, line and
/// paragraph separators, byte-order marks — as `\uXXXX`. JSON keeps such
/// characters only inside strings, where the escape means the same, so the
/// text stays the same JSON value and embeds verbatim in a YAML block.
pub fn yaml_safe_json(json: &str) -> String {
    if json.chars().all(yaml_printable) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if yaml_printable(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// YAML 1.1's printable set, without U+0085 and the separators U+2028/9
/// (YAML 1.1 parsers, Kubernetes' among them, break lines at those) and
/// the byte-order mark.
pub(crate) fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
}

/// Writes `files` as the directory `dir`, atomically: they are built in a
/// directory beside it and renamed into place. An existing non-empty `dir`
/// needs `force`; then each generated file replaces its old version (the
/// `k8s/` folder as a whole) and other files — logs, spans — stay.
pub fn write_dir(dir: &Path, files: &[GeneratedFile], force: bool) -> Result<(), GenerateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| GenerateError::Io { path, error }
    };
    let existing = match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(GenerateError::NotADirectory(dir.to_path_buf())),
        Ok(_) => Some(std::fs::read_dir(dir).map_err(io(dir))?.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(dir)(e)),
    };
    if existing == Some(true) && !force {
        return Err(GenerateError::NotEmpty(dir.to_path_buf()));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let base = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "system".into());
    let tmp = Scratch::create(&parent, &base)?;
    for f in files {
        let path = tmp.path.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        std::fs::write(&path, &f.content).map_err(io(&path))?;
    }
    if existing != Some(true) {
        // rename(2) replaces an empty directory in one step.
        std::fs::rename(&tmp.path, dir).map_err(io(dir))?;
        tmp.disarm();
        return Ok(());
    }
    let mut tops: Vec<&str> = Vec::new();
    for f in files {
        let top = f.path.split('/').next().unwrap_or(&f.path);
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    for top in tops {
        let (new, old) = (tmp.path.join(top), dir.join(top));
        if new.is_dir() && old.exists() {
            let aside = tmp.path.join(format!(".old-{top}"));
            std::fs::rename(&old, &aside).map_err(io(&old))?;
        }
        std::fs::rename(&new, &old).map_err(io(&old))?;
    }
    Ok(())
}

/// A scratch directory beside the target, removed unless renamed into place.
struct Scratch {
    path: PathBuf,
    armed: bool,
}

impl Scratch {
    fn create(parent: &Path, base: &str) -> Result<Scratch, GenerateError> {
        // Created with create_dir (not a 0700 temp dir) so the system
        // directory gets the usual permissions when renamed into place.
        for k in 0u32.. {
            let path = parent.join(format!(".{base}.tmp-{}-{k}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Scratch { path, armed: true }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && k < 1000 => continue,
                Err(error) => return Err(GenerateError::Io { path, error }),
            }
        }
        unreachable!("the loop returns")
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(dns_label("CartService"), "cartservice");
        assert_eq!(dns_label("ts-order_service.v2"), "ts-order-service-v2");
        assert_eq!(dns_label("--A  b--"), "a-b");
        assert_eq!(dns_label("9lives"), "s-9lives");
        assert_eq!(dns_label("ÜÜ"), "svc");
        assert_eq!(dns_label(&"x".repeat(100)).len(), 63);
        let names: Vec<String> = ["a", "A", "a-2", "load", &"y".repeat(70), &"Y".repeat(70)].map(String::from).into();
        let got = dns_labels(&names, &["load"]);
        assert_eq!(&got[..4], ["a", "a-2", "a-2-2", "load-2"]);
        assert_eq!(got[4], "y".repeat(63));
        assert_eq!(got[5], "y".repeat(61) + "-2");
        assert!(got.iter().all(|l| is_dns1035_label(l)));
    }

    #[test]
    fn yaml_safe() {
        let json = serde_json::to_string("a\u{2028}b\u{85}c\u{7f}é\u{feff}").unwrap();
        let safe = yaml_safe_json(&json);
        assert_eq!(safe, r#""a\u2028b\u0085c\u007fé\ufeff""#);
        assert_eq!(serde_json::from_str::<String>(&safe).unwrap(), "a\u{2028}b\u{85}c\u{7f}é\u{feff}");
        assert_eq!(yaml_safe_json("{\"a\": 1}\n"), "{\"a\": 1}\n");
    }
}
