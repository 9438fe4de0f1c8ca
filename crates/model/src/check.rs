//! Checking a model's internal references, and finding values in its text.
//!
//! A model that parsed can still refer to an API or state that does not
//! exist (a hand edit, a truncated intervention). [`check`] finds the first
//! such reference and says where it is as a JSON path; [`locate_line`] turns
//! the path into a line of the file, so errors can name `file:line`.

use std::fmt::Write as _;

use crate::model::{ApiId, ApiModel, Caller, CondSketch, MAX_REPLICAS, Model, State};
use crate::sketch::Sketch;

/// A step of a path into the JSON document.
#[derive(Clone, Debug)]
pub enum OwnedSeg {
    Key(&'static str),
    Index(usize),
}

impl OwnedSeg {
    pub fn as_seg(&self) -> Seg<'_> {
        match self {
            OwnedSeg::Key(k) => Seg::Key(k),
            OwnedSeg::Index(i) => Seg::Index(*i),
        }
    }
}

pub fn path_string(segs: &[OwnedSeg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            OwnedSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s += k;
            }
            OwnedSeg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// A reference that points nowhere: where (a JSON path) and what is wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {message}", path_string(path))]
pub struct CheckError {
    pub path: Vec<OwnedSeg>,
    pub message: String,
}

impl CheckError {
    /// The 1-based line of `text` (the model file) where the bad value is; 0 if not found.
    pub fn line(&self, text: &str) -> u64 {
        locate_line(text, &self.path.iter().map(OwnedSeg::as_seg).collect::<Vec<_>>()).unwrap_or(0)
    }
}

fn err(path: Vec<OwnedSeg>, message: String) -> CheckError {
    CheckError { path, message }
}

/// Every reference inside the model points at something that exists.
pub fn check(model: &Model) -> Result<(), CheckError> {
    use OwnedSeg::{Index as I, Key as K};
    let refs = Refs { apis: model.apis.len() };
    for (i, r) in model.roots.iter().enumerate() {
        refs.api(r.api, vec![K("roots"), I(i), K("api")])?;
    }
    for (i, e) in model.edges.iter().enumerate() {
        refs.api(e.caller, vec![K("edges"), I(i), K("caller")])?;
        refs.api(e.callee, vec![K("edges"), I(i), K("callee")])?;
    }
    let mut names = std::collections::HashMap::new();
    for (a, api) in model.apis.iter().enumerate() {
        let at = [K("apis"), I(a)];
        // An API the services list does not name would be served by no
        // service; two APIs of one name would share one operation.
        if !model.services.contains(&api.service) {
            return Err(err(path(&at, &[K("service")]), format!("service `{}` is not in `services`", api.service)));
        }
        if let Some(other) = names.insert((&api.service, &api.operation), a) {
            return Err(err(
                path(&at, &[K("operation")]),
                format!("API `{} {}` is also apis[{other}]", api.service, api.operation),
            ));
        }
        api_ok(&refs, api, &at)?;
    }
    deploy_ok(model)
}

/// `prefix` and then `rest`.
fn path(prefix: &[OwnedSeg], rest: &[OwnedSeg]) -> Vec<OwnedSeg> {
    [prefix, rest].concat()
}

/// Checks the references a part of the model holds, against the model's
/// number of APIs.
struct Refs {
    apis: usize,
}

impl Refs {
    fn api(&self, id: ApiId, at: Vec<OwnedSeg>) -> Result<(), CheckError> {
        let n = self.apis;
        if (id as usize) < n {
            Ok(())
        } else {
            Err(err(at, format!("API {id} does not exist (the model has {n} APIs)")))
        }
    }

    fn caller(&self, c: Caller, at: Vec<OwnedSeg>) -> Result<(), CheckError> {
        c.map_or(Ok(()), |id| self.api(id, at))
    }

    /// A sketch per caller, and the callers it names.
    fn cond(&self, c: &CondSketch, at: &[OwnedSeg]) -> Result<(), CheckError> {
        use OwnedSeg::{Index as I, Key as K};
        sketch_ok(&c.all, path(at, &[K("all")]))?;
        for (k, cs) in c.by_caller.iter().enumerate() {
            let at = path(at, &[K("by_caller"), I(k)]);
            sketch_ok(&cs.sketch, path(&at, &[K("sketch")]))?;
            self.caller(cs.caller, path(&at, &[K("caller")]))?;
        }
        Ok(())
    }
}

/// One API at `at`: its sketches, callers, states, overheads and naive
/// calls.
fn api_ok(refs: &Refs, api: &ApiModel, at: &[OwnedSeg]) -> Result<(), CheckError> {
    use OwnedSeg::{Index as I, Key as K};
    sketch_ok(&api.latency, path(at, &[K("latency")]))?;
    for (key, sketch) in [("request_bytes", &api.request_bytes), ("response_bytes", &api.response_bytes)] {
        if let Some(sketch) = sketch {
            sketch_ok(sketch, path(at, &[K(key)]))?;
        }
    }
    // Fits clamp it to [0, 1]; outside, the copula draws NaN overheads.
    if !(0.0..=1.0).contains(&api.overhead_correlation) {
        return Err(err(
            path(at, &[K("overhead_correlation")]),
            format!("correlation {} is not between 0 and 1", api.overhead_correlation),
        ));
    }
    for (i, c) in api.callers.iter().enumerate() {
        refs.caller(c.caller, path(at, &[K("callers"), I(i), K("caller")]))?;
    }
    for (s, state) in api.states.iter().enumerate() {
        state_ok(refs, state, s, api.states.len(), &path(at, &[K("states"), I(s)]))?;
    }
    for (i, o) in api.overhead.iter().enumerate() {
        refs.api(o.callee, path(at, &[K("overhead"), I(i), K("callee")]))?;
        refs.cond(&o.overhead, &path(at, &[K("overhead"), I(i), K("overhead")]))?;
    }
    if let Some(naive) = &api.naive {
        sketch_ok(&naive.work, path(at, &[K("naive"), K("work")]))?;
        for (i, c) in naive.calls.iter().enumerate() {
            refs.api(c.callee, path(at, &[K("naive"), K("calls"), I(i), K("callee")]))?;
        }
    }
    Ok(())
}

/// State `s` (of `states` in its API) at `at`: its calls, its λ, and its
/// transitions, whose probabilities sum to 1.
fn state_ok(refs: &Refs, state: &State, s: usize, states: usize, at: &[OwnedSeg]) -> Result<(), CheckError> {
    use OwnedSeg::{Index as I, Key as K};
    for (i, &c) in state.calls.iter().enumerate() {
        refs.api(c, path(at, &[K("calls"), I(i)]))?;
    }
    if !(state.lambda.is_finite() && state.lambda >= 0.0) {
        return Err(err(path(at, &[K("lambda")]), format!("λ {} is not a number ≥ 0", state.lambda)));
    }
    let total: f64 = state.next.iter().map(|t| t.p).sum();
    if state.next.is_empty() || (total - 1.0).abs() > 1e-3 {
        return Err(err(path(at, &[K("next")]), format!("the probabilities out of state {s} sum to {total}, not 1")));
    }
    for (t, tr) in state.next.iter().enumerate() {
        let at = path(at, &[K("next"), I(t)]);
        if let Some(to) = tr.to
            && to as usize >= states
        {
            return Err(err(
                path(&at, &[K("to")]),
                format!("state {to} does not exist (this API has {states} states)"),
            ));
        }
        if !(tr.p.is_finite() && (0.0..=1.0).contains(&tr.p)) {
            return Err(err(path(&at, &[K("p")]), format!("probability {} is not between 0 and 1", tr.p)));
        }
        for (i, c) in tr.by_caller.iter().enumerate() {
            refs.caller(c.caller, path(&at, &[K("by_caller"), I(i), K("caller")]))?;
        }
        refs.cond(&tr.work, &path(&at, &[K("work")]))?;
    }
    Ok(())
}

/// A sketch's extremes bound every value drawn from it: `min` above `max`
/// would make sampling and quantiles panic.
fn sketch_ok(s: &Sketch, at: Vec<OwnedSeg>) -> Result<(), CheckError> {
    if s.n > 0 && s.min > s.max {
        return Err(err(at, format!("the sketch's min {} is above its max {}", s.min, s.max)));
    }
    Ok(())
}

/// What `palette generate` takes from `deploy` is within what a system allows.
fn deploy_ok(model: &Model) -> Result<(), CheckError> {
    use OwnedSeg::Key as K;
    let d = &model.deploy;
    if let Some(rpc) = d.rpc.as_deref()
        && !matches!(rpc, "http" | "grpc")
    {
        return Err(err(vec![K("deploy"), K("rpc")], format!("rpc `{rpc}` is neither `http` nor `grpc`")));
    }
    if let Some(rate) = d.sample_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(err(vec![K("deploy"), K("sample_rate")], format!("sample_rate {rate} is not between 0 and 1")));
    }
    if let Some((service, n)) = d.replicas.iter().find(|(_, n)| !(1..=MAX_REPLICAS).contains(*n)) {
        return Err(err(
            vec![K("deploy"), K("replicas")],
            format!("{n} instances of `{service}`; a service has 1 to {MAX_REPLICAS}"),
        ));
    }
    Ok(())
}

/// A step of a path into a JSON document.
#[derive(Clone, Copy, Debug)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The 1-based line where the value at `path` starts, by scanning the text
/// (serde keeps no positions for values that parsed fine).
pub fn locate_line(text: &str, path: &[Seg]) -> Option<u64> {
    let offset = locate(text.as_bytes(), path)?;
    Some(text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1)
}

fn locate(b: &[u8], path: &[Seg]) -> Option<usize> {
    let mut pos = ws(b, 0);
    for seg in path {
        match *seg {
            Seg::Key(key) => {
                if b.get(pos) != Some(&b'{') {
                    return None;
                }
                pos += 1;
                loop {
                    pos = ws(b, pos);
                    if b.get(pos) != Some(&b'"') {
                        return None;
                    }
                    let end = skip_value(b, pos)?;
                    let found = &b[pos + 1..end - 1] == key.as_bytes();
                    pos = ws(b, end);
                    if b.get(pos) != Some(&b':') {
                        return None;
                    }
                    pos = ws(b, pos + 1);
                    if found {
                        break;
                    }
                    pos = ws(b, skip_value(b, pos)?);
                    if b.get(pos) != Some(&b',') {
                        return None;
                    }
                    pos += 1;
                }
            }
            Seg::Index(i) => {
                if b.get(pos) != Some(&b'[') {
                    return None;
                }
                pos = ws(b, pos + 1);
                for _ in 0..i {
                    pos = ws(b, skip_value(b, pos)?);
                    if b.get(pos) != Some(&b',') {
                        return None;
                    }
                    pos = ws(b, pos + 1);
                }
                if matches!(b.get(pos), None | Some(b']')) {
                    return None;
                }
            }
        }
    }
    Some(pos)
}

fn ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && b[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// The end of the JSON value starting at `pos`.
fn skip_value(b: &[u8], pos: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = pos;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                if depth == 0 {
                    return (i <= b.len()).then_some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b',' if depth == 0 => return Some(i),
            c if depth == 0 && c.is_ascii_whitespace() => return Some(i),
            _ => {}
        }
        i += 1;
    }
    (depth == 0).then_some(i)
}
