//! Interventions: what-if edits of a model (paper §3.3).
//!
//! An intervention file is a YAML list, one intervention per entry, applied
//! in order to a copy of the model; each applied entry is recorded in
//! [`Provenance::interventions`](crate::model::Provenance) as one line of
//! JSON. Topology edits ([`remove`], [`downscale`], [`add`]) rewrite the
//! callers' PFAs so their probabilities still sum to 1; latency edits
//! ([`delay`], [`scale`]) change sketches; deployment choices ([`record`]:
//! work mode, RPC, replicas) are recorded in [`Model::deploy`] for
//! `palette generate`, and so are [`resilience`] policies (timeouts,
//! retries, circuit breakers), which the simulator follows too. Trace filters ([`filter`]) only mean something when
//! fitting, so applying one to a model is an error saying so.
//!
//! ```
//! use palette_model::intervene::{apply, parse};
//! # let model = palette_model::intervene::tests_support::shop();
//! let entries = parse("- delay: { into: cart, add_ms: 5 }\n- work: { mode: cpu }\n")?;
//! let edited = apply(&model, &entries)?;
//! assert_eq!(edited.provenance.interventions.len(), 2);
//! assert_eq!(edited.deploy.work[0].mode.name(), "cpu");
//! # Ok::<(), palette_model::intervene::InterventionError>(())
//! ```

pub mod add;
pub mod delay;
pub mod downscale;
pub mod filter;
mod graph;
pub mod record;
pub mod remove;
pub mod resilience;
pub mod scale;
#[doc(hidden)]
pub mod tests_support;

use serde::{Deserialize, Serialize};

use crate::model::{ApiId, Model};

pub use filter::FilterSpec;

/// One intervention, as written in the file (`- kind: { fields }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Intervention {
    /// Trace selection for `palette fit`.
    Filter(FilterSpec),
    /// Remove a service, an API or a call edge.
    Remove(remove::RemoveSpec),
    /// Keep the N services carrying most traffic.
    Downscale(downscale::DownscaleSpec),
    /// Add a call (and the callee API or service, when new).
    Add(add::AddSpec),
    /// Fixed extra latency on every call into a service or API.
    Delay(delay::DelaySpec),
    /// Scale a service's or API's local work.
    ScaleLatency(scale::ScaleLatencySpec),
    /// Scale request and response sizes.
    ScalePayload(scale::ScalePayloadSpec),
    /// How local work is produced (recorded for generate).
    Work(record::WorkSpec),
    /// The transport between services (recorded for generate).
    Rpc(crate::model::RpcMode),
    /// Instances of a service (recorded for generate).
    Replicate(record::ReplicateSpec),
    /// The share of requests traced (recorded for generate).
    Tracing(record::TracingSpec),
    /// A caller's timeout on calls to a service.
    Timeout(resilience::TimeoutSpec),
    /// Failed calls to a service are tried again.
    Retry(resilience::RetrySpec),
    /// Calls to a failing service are refused for a while.
    CircuitBreaker(resilience::BreakerSpec),
    /// An API's own failure probability.
    ErrorRate(resilience::ErrorRateSpec),
}

impl Intervention {
    /// The entry's kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Intervention::Filter(_) => "filter",
            Intervention::Remove(_) => "remove",
            Intervention::Downscale(_) => "downscale",
            Intervention::Add(_) => "add",
            Intervention::Delay(_) => "delay",
            Intervention::ScaleLatency(_) => "scale_latency",
            Intervention::ScalePayload(_) => "scale_payload",
            Intervention::Work(_) => "work",
            Intervention::Rpc(_) => "rpc",
            Intervention::Replicate(_) => "replicate",
            Intervention::Tracing(_) => "tracing",
            Intervention::Timeout(_) => "timeout",
            Intervention::Retry(_) => "retry",
            Intervention::CircuitBreaker(_) => "circuit_breaker",
            Intervention::ErrorRate(_) => "error_rate",
        }
    }

    /// The entry as one line of JSON, for provenance.
    pub fn describe(&self) -> String {
        serde_json::to_string(self).expect("interventions always serialise")
    }
}

/// An intervention and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// 0-based position in the file's list.
    pub index: usize,
    /// 1-based line of the entry in the file (0: not from a file).
    pub line: u64,
    pub intervention: Intervention,
}

impl Entry {
    /// An entry made from a command-line flag rather than a file.
    pub fn from_flag(index: usize, intervention: Intervention) -> Entry {
        Entry { index, line: 0, intervention }
    }
}

/// Why an intervention file cannot be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum InterventionError {
    /// The file is not a YAML list of interventions (bad data).
    #[error("{}{message}", at_line(*line))]
    Syntax { line: u64, message: String },
    /// An entry does not parse as an intervention (bad data).
    #[error("{}entry {index} ({kind}): {message}", at_line(*line))]
    Malformed { index: usize, line: u64, kind: String, message: String },
    /// An entry parsed but cannot apply to this model (usage).
    #[error("{}entry {index} ({kind}): {message}", at_line(*line))]
    Invalid { index: usize, line: u64, kind: &'static str, message: String },
}

fn at_line(line: u64) -> String {
    if line > 0 { format!("line {line}: ") } else { String::new() }
}

impl InterventionError {
    /// The file itself is wrong (exit 65); otherwise the request is (exit 2).
    pub fn is_bad_data(&self) -> bool {
        !matches!(self, InterventionError::Invalid { .. })
    }

    /// The file line the error is about (0: unknown).
    pub fn line(&self) -> u64 {
        match self {
            InterventionError::Syntax { line, .. }
            | InterventionError::Malformed { line, .. }
            | InterventionError::Invalid { line, .. } => *line,
        }
    }
}

impl palette_trace::failure::Classify for InterventionError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        use palette_trace::failure::FailureKind;
        if self.is_bad_data() { FailureKind::BadData } else { FailureKind::Usage }
    }
}

/// What an intervention's own check returns; [`apply`] adds the entry.
pub type Check<T = ()> = Result<T, String>;

/// Parses an intervention file's text.
pub fn parse(text: &str) -> Result<Vec<Entry>, InterventionError> {
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| InterventionError::Syntax {
        line: e.location().map_or(0, |l| l.line() as u64),
        message: format!("not valid YAML: {}", strip_location(&e.to_string())),
    })?;
    let items = match doc {
        serde_norway::Value::Null => Vec::new(),
        serde_norway::Value::Sequence(items) => items,
        _ => {
            return Err(InterventionError::Syntax {
                line: 1,
                message: "expected a list of interventions (`- remove: { service: x }`)".into(),
            });
        }
    };
    let lines = entry_lines(text);
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let line = lines.get(index).copied().unwrap_or(0);
        let kind = match &item {
            serde_norway::Value::Mapping(m) if m.len() == 1 => {
                m.keys().next().and_then(|k| k.as_str()).unwrap_or("?").to_string()
            }
            serde_norway::Value::Mapping(m) if m.len() > 1 => {
                let keys: Vec<&str> = m.keys().filter_map(|k| k.as_str()).collect();
                return Err(InterventionError::Malformed {
                    index,
                    line,
                    kind: keys.join("+"),
                    message: format!(
                        "one intervention per entry, found {} (`{}`): start each with its own `- `",
                        keys.len(),
                        keys.join("`, `")
                    ),
                });
            }
            _ => {
                return Err(InterventionError::Malformed {
                    index,
                    line,
                    kind: "?".into(),
                    message: "expected `kind: { fields }`, e.g. `remove: { service: x }`".into(),
                });
            }
        };
        // JSON has no NaN or infinity: through it, `.nan` would read as
        // null, a missing optional field or a wrong type.
        if let Some(v) = non_finite(&item) {
            return Err(InterventionError::Malformed {
                index,
                line,
                kind,
                message: format!("`{v}` is not a finite number"),
            });
        }
        // Through JSON: serde_norway reads enums from a mapping only when
        // parsing text, and the entry's own text is not at hand.
        let json = serde_json::to_value(&item).map_err(|e| InterventionError::Malformed {
            index,
            line,
            kind: kind.clone(),
            message: e.to_string(),
        })?;
        let intervention: Intervention = serde_json::from_value(json).map_err(|e| InterventionError::Malformed {
            index,
            line,
            kind: kind.clone(),
            message: strip_location(&e.to_string()),
        })?;
        entries.push(Entry { index, line, intervention });
    }
    Ok(entries)
}

/// The first NaN or infinity anywhere in `v`.
fn non_finite(v: &serde_norway::Value) -> Option<f64> {
    use serde_norway::Value;
    match v {
        Value::Number(n) => n.as_f64().filter(|f| !f.is_finite()),
        Value::Sequence(items) => items.iter().find_map(non_finite),
        Value::Mapping(m) => m.values().find_map(non_finite),
        Value::Tagged(t) => non_finite(&t.value),
        _ => None,
    }
}

/// Serde's messages end with "at line L column C" relative to a re-parsed
/// value (meaningless here): the entry's own line is reported instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The 1-based lines where the top-level list's entries start: lines whose
/// first non-blank character is `-` at the smallest indentation used.
fn entry_lines(text: &str) -> Vec<u64> {
    let dashes: Vec<(usize, u64)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let indent = l.len() - l.trim_start().len();
            let rest = l.trim_start();
            (rest == "-" || rest.starts_with("- ")).then_some((indent, i as u64 + 1))
        })
        .collect();
    let min = dashes.iter().map(|d| d.0).min().unwrap_or(0);
    dashes.into_iter().filter(|d| d.0 == min).map(|d| d.1).collect()
}

/// Applies `entries` in order to a copy of `model`; the original is
/// untouched. Filters are refused: they select traces, so only `fit` can
/// use them (see [`fit_filters`]).
pub fn apply(model: &Model, entries: &[Entry]) -> Result<Model, InterventionError> {
    let mut m = model.clone();
    for e in entries {
        apply_one(&mut m, e, false)?;
    }
    Ok(m)
}

/// Like [`apply`], skipping filters (already used by the fit that made the
/// model; they are still recorded in its provenance).
pub fn apply_after_fit(model: Model, entries: &[Entry]) -> Result<Model, InterventionError> {
    let mut m = model;
    for e in entries {
        apply_one(&mut m, e, true)?;
    }
    Ok(m)
}

/// The filters among `entries`, merged into `base` in order.
pub fn fit_filters(entries: &[Entry], base: &mut crate::TraceFilter) {
    for e in entries {
        if let Intervention::Filter(f) = &e.intervention {
            f.merge_into(base);
        }
    }
}

fn apply_one(m: &mut Model, e: &Entry, after_fit: bool) -> Result<(), InterventionError> {
    let kind = e.intervention.kind();
    let invalid = |message: String| InterventionError::Invalid { index: e.index, line: e.line, kind, message };
    match &e.intervention {
        Intervention::Filter(_) if after_fit => {}
        Intervention::Filter(_) => {
            return Err(invalid(
                "a filter selects traces, so it only applies when fitting: use it with `palette fit --apply`".into(),
            ));
        }
        Intervention::Remove(s) => s.apply(m).map_err(invalid)?,
        Intervention::Downscale(s) => s.apply(m).map_err(invalid)?,
        Intervention::Add(s) => s.apply(m).map_err(invalid)?,
        Intervention::Delay(s) => s.apply(m).map_err(invalid)?,
        Intervention::ScaleLatency(s) => s.apply(m).map_err(invalid)?,
        Intervention::ScalePayload(s) => s.apply(m).map_err(invalid)?,
        Intervention::Work(s) => s.apply(m).map_err(invalid)?,
        Intervention::Rpc(mode) => record::apply_rpc(*mode, m),
        Intervention::Replicate(s) => s.apply(m).map_err(invalid)?,
        Intervention::Tracing(s) => s.apply(m).map_err(invalid)?,
        Intervention::Timeout(s) => s.apply(m).map_err(invalid)?,
        Intervention::Retry(s) => s.apply(m).map_err(invalid)?,
        Intervention::CircuitBreaker(s) => s.apply(m).map_err(invalid)?,
        Intervention::ErrorRate(s) => s.apply(m).map_err(invalid)?,
    }
    if let Err(c) = crate::check::check(m) {
        return Err(invalid(format!("the edit left an inconsistent model ({c}); please report this")));
    }
    m.provenance.interventions.push(e.intervention.describe());
    Ok(())
}

/// The APIs of `service`, or an error naming the services there are.
pub(crate) fn service_apis(m: &Model, service: &str) -> Check<Vec<ApiId>> {
    let apis: Vec<ApiId> = (0..m.apis.len() as ApiId).filter(|&a| m.apis[a as usize].service == service).collect();
    if apis.is_empty() {
        return Err(format!("unknown service `{service}` (the model has {})", some_names(&m.services)));
    }
    Ok(apis)
}

/// An API by `service operation`, or an error.
pub(crate) fn api(m: &Model, name: &str) -> Check<ApiId> {
    m.find_api(name).ok_or_else(|| {
        let names: Vec<String> = (0..m.apis.len() as ApiId).map(|a| m.api_name(a)).collect();
        format!("unknown API `{name}` (write `service operation`; the model has {})", some_names(&names))
    })
}

/// A service's or an API's APIs, from exactly one of the two fields.
pub(crate) fn target(m: &Model, service: &Option<String>, api_name: &Option<String>) -> Check<Vec<ApiId>> {
    match (service, api_name) {
        (Some(s), None) => service_apis(m, s),
        (None, Some(a)) => Ok(vec![api(m, a)?]),
        (Some(_), Some(_)) => Err("give `service` or `api`, not both".into()),
        (None, None) => Err("give `service` or `api`".into()),
    }
}

fn some_names(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = names.iter().take(SHOWN).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s += &format!(" and {} more", names.len() - SHOWN);
    }
    if s.is_empty() { "none".into() } else { s }
}

/// A number that must be finite and positive (or ≥ 0 with `zero_ok`).
pub(crate) fn positive(field: &str, v: f64, zero_ok: bool) -> Check {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
        return Err(format!("`{field}` must be a number {} 0, not {v}", if zero_ok { "≥" } else { ">" }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms_with_lines() {
        let text = "# what-if\n- filter: { drop_errors: true, exclude_services: [adservice] }\n\
                    - remove: { service: emailservice, keep_latency: true }\n- downscale: { services: 50 }\n\
                    - work: { mode: cpu }\n- delay: { into: cartservice, add_ms: 245 }\n\
                    - scale_latency: { service: frontend, factor: 0.5 }\n- rpc: grpc\n\
                    - remove:\n    edge: { caller: a x, callee: b y }\n";
        let entries = parse(text).unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.intervention.kind()).collect();
        assert_eq!(kinds, ["filter", "remove", "downscale", "work", "delay", "scale_latency", "rpc", "remove"]);
        assert_eq!(entries.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(entries[6].intervention, Intervention::Rpc(crate::model::RpcMode::Grpc));
    }

    #[test]
    fn bad_files_name_the_entry() {
        let err = parse("- delay: { into: a, add_ms: 1 }\n- explode: { service: x }\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("line 2: entry 1 (explode): unknown variant `explode`"), "{msg}");
        assert!(err.is_bad_data());
        let err = parse("- delay: { into: a, add_ms: fast }\n").unwrap_err().to_string();
        assert!(err.contains("entry 0 (delay)") && err.contains("invalid type"), "{err}");
        let err = parse("- delay: { into: a, add_ms: 1\n").unwrap_err().to_string();
        assert!(err.contains("not valid YAML"), "{err}");
        let err = parse("remove: x\n").unwrap_err().to_string();
        assert!(err.contains("expected a list"), "{err}");
    }
}
