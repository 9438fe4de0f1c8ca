//! Inputs that may not belong together: files that hold the same traces, or
//! groups of files whose systems share no service.
//!
//! Checked while reading, beside assembly, and only when there are two input
//! files or more: every trace is looked at once, as its spans are handed on
//! to be built, so the check costs no second read. Per file it keeps the
//! service names seen (a set of symbols) and a span count; per pair of files
//! what they share.
//!
//! * **Shared trace ids.** Without a window every span of a trace id is in
//!   one group, so a trace whose spans come from several files is seen whole
//!   and counted exactly, with no memory of its own. With a window (Alibaba)
//!   a trace of one file may have been closed before another file brings the
//!   same id, so trace ids are also kept in a bounded hash sample (below).
//!   A trace id in two files is only a problem when some span of it is in
//!   both: a trace *split* across files (time-sharded Alibaba files, a
//!   rotated OTLP file) is one trace read from two places, and is not
//!   reported.
//! * **Shared span ids.** The same span ids under different trace ids in two
//!   files (the same spans exported twice with ids of another width, say),
//!   from a bounded hash sample of span ids. Alibaba's rpc ids (`0.1.2`,
//!   the same in every trace) and small ids (sequential per trace) are left
//!   out: they are not meant to be unique.
//! * **Disjoint services.** Files are joined when they share a service name
//!   (a span's own service or the peer it names); when that leaves several
//!   groups, every group but the one with the most spans is reported.
//!
//! The hash samples keep every id whose hash has `level` low zero bits, and
//! raise the level (halving what is kept) whenever more than [`MAX_IDS`]
//! are held. Below that size they hold every id and counts are exact; above
//! it each id found counts for `2^level`, an unbiased estimate, and the
//! warning says "about".

use std::fmt;
use std::path::PathBuf;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::span::{Span, SpanId, Sym, TraceId, flags};
use crate::stats::thousands;

/// Most ids a hash sample holds: a little under 2^19 keeps its table at
/// 2^19 slots, about 13 MB for trace ids and 9 MB for span ids at most.
pub const MAX_IDS: usize = 7 << 16;

/// What is wrong with a set of inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputWarningKind {
    /// Two files hold traces with the same id and spans in common: the same
    /// traces twice.
    SharedTraceIds,
    /// Two files hold the same span ids under different trace ids.
    SharedSpanIds,
    /// A group of files shares no service name with the other inputs.
    DisjointServices,
}

impl InputWarningKind {
    pub fn name(self) -> &'static str {
        match self {
            InputWarningKind::SharedTraceIds => "shared_trace_ids",
            InputWarningKind::SharedSpanIds => "shared_span_ids",
            InputWarningKind::DisjointServices => "disjoint_services",
        }
    }
}

/// One problem with the inputs; its [`fmt::Display`] is the one-line message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputWarning {
    pub kind: InputWarningKind,
    /// The two files that share ids; or the group of files that shares no
    /// service with the rest.
    #[serde(serialize_with = "lossy_paths")]
    pub files: Vec<PathBuf>,
    /// For [`InputWarningKind::DisjointServices`], every other input, the
    /// largest group (most spans) first; empty otherwise.
    #[serde(serialize_with = "lossy_paths")]
    pub others: Vec<PathBuf>,
    /// Trace ids or span ids the two files share; for disjoint services,
    /// the distinct service names of `files`.
    pub count: u64,
    /// For shared trace ids: how many of those traces have a span (the same
    /// span id) in both files; the rest are traces split across the two.
    pub repeated: u64,
    /// `count` is estimated from a hash sample (the input held more ids
    /// than [`MAX_IDS`]).
    pub estimated: bool,
}

fn lossy_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

impl fmt::Display for InputWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let about = if self.estimated { "about " } else { "" };
        let n = thousands(self.count);
        match self.kind {
            InputWarningKind::SharedTraceIds => {
                write!(f, "{} share {about}{n} trace ids", list(&self.files, 2))?;
                if self.repeated < self.count {
                    write!(f, ", {about}{} of them with the same spans in both", thousands(self.repeated))?;
                }
                write!(f, " (the same traces in two files?); they are fitted as one input")
            }
            InputWarningKind::SharedSpanIds => write!(
                f,
                "{} share {about}{n} span ids under different trace ids (the same spans in two files?); \
                 they are fitted as one input",
                list(&self.files, 2)
            ),
            InputWarningKind::DisjointServices => write!(
                f,
                "{} {} no service with the other inputs ({}): unrelated systems are fitted as one",
                list(&self.files, 3),
                if self.files.len() == 1 { "shares" } else { "share" },
                list(&self.others, 2)
            ),
        }
    }
}

/// `a`, `a and b`, `a, b and c`, or `a, b and 5 more` past `max` names.
fn list(paths: &[PathBuf], max: usize) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let max = max.max(1);
    match names.len() {
        0 => String::new(),
        1 => names[0].clone(),
        n if n <= max => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
        n => format!("{} and {} more", names[..max].join(", "), n - max),
    }
}

/// A splitmix64 finaliser: spreads ids (often small or structured) over
/// all 64 bits, so the low bits sample them fairly.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

fn trace_hash(t: TraceId) -> u64 {
    let v = t.as_u128();
    mix((v >> 64) as u64 ^ mix(v as u64))
}

/// The span id of a span checked for [`InputWarningKind::SharedSpanIds`]:
/// not an rpc id, and large enough to be meant as unique.
fn global_span_id(s: &Span) -> Option<SpanId> {
    (!s.has(flags::RPC_PATH_IDS) && s.span_id.0 >= 1 << 32).then_some(s.span_id)
}

/// A map keyed by an id's hash that keeps only the hashes with `level` low
/// zero bits, raising the level whenever it holds more than [`MAX_IDS`].
struct Sample<V> {
    map: FxHashMap<u64, V>,
    level: u32,
}

impl<V> Sample<V> {
    fn new() -> Sample<V> {
        Sample { map: FxHashMap::default(), level: 0 }
    }
    fn admits(&self, h: u64) -> bool {
        h.trailing_zeros() >= self.level
    }
    /// How many ids one id kept stands for.
    fn weight(&self) -> u64 {
        1u64.checked_shl(self.level).unwrap_or(u64::MAX)
    }
    fn insert(&mut self, h: u64, v: V) {
        self.map.insert(h, v);
        while self.map.len() > MAX_IDS {
            self.level += 1;
            let level = self.level;
            self.map.retain(|k, _| k.trailing_zeros() >= level);
        }
    }
}

/// Where a (windowed) trace id was first seen.
struct TraceSeen {
    first: u32,
    /// The latest other file it was counted for.
    last: u32,
    /// The latest other file found repeating one of its spans.
    repeated_last: u32,
    /// Low bits of a span id of the trace in `first`: the same span in
    /// another file makes it the same trace, not a split one.
    witness: u32,
}

/// Where a sampled span id was first seen.
struct SpanSeen {
    file: u32,
    /// Low bits of its trace id's hash.
    trace: u32,
}

#[derive(Default)]
struct FileSeen {
    services: FxHashSet<Sym>,
    spans: u64,
}

#[derive(Default)]
struct PairSeen {
    traces: u64,
    repeated: u64,
    traces_estimated: bool,
    spans: u64,
    spans_estimated: bool,
}

/// Watches the traces of one read for inputs that do not belong together.
pub(crate) struct OverlapTracker {
    files: Vec<FileSeen>,
    /// Keyed by (lower file index, higher).
    pairs: FxHashMap<(u32, u32), PairSeen>,
    /// Windowed input only: links the groups of one trace id read apart.
    traces: Option<Sample<TraceSeen>>,
    spans: Sample<SpanSeen>,
    /// Reused per group: its files, and (span id, file) pairs.
    group_files: Vec<u32>,
    scratch: Vec<(SpanId, u32)>,
    repeating: Vec<u32>,
}

impl OverlapTracker {
    /// A tracker for `files` input files; `windowed` when traces may close
    /// before the input ends (so one trace id can come in several groups).
    pub(crate) fn new(files: usize, windowed: bool) -> OverlapTracker {
        OverlapTracker {
            files: (0..files).map(|_| FileSeen::default()).collect(),
            pairs: FxHashMap::default(),
            traces: windowed.then(Sample::new),
            spans: Sample::new(),
            group_files: Vec::new(),
            scratch: Vec::new(),
            repeating: Vec::new(),
        }
    }

    /// Looks at one closed group of spans of `trace_id`, before it is built.
    pub(crate) fn group(&mut self, trace_id: TraceId, spans: &[Span]) {
        let th = trace_hash(trace_id);
        self.group_files.clear();
        let mut last: Option<(u32, Sym, Sym)> = None;
        for s in spans {
            let f = s.origin.file;
            let Some(file) = self.files.get_mut(f as usize) else { continue };
            file.spans += 1;
            if last != Some((f, s.service, s.remote_service)) {
                last = Some((f, s.service, s.remote_service));
                for sym in [s.service, s.remote_service] {
                    if !sym.is_empty() {
                        file.services.insert(sym);
                    }
                }
                if !self.group_files.contains(&f) {
                    self.group_files.push(f);
                }
            }
            if let Some(id) = global_span_id(s) {
                let h = mix(id.0);
                if self.spans.admits(h) {
                    match self.spans.map.get(&h) {
                        None => self.spans.insert(h, SpanSeen { file: f, trace: th as u32 }),
                        Some(seen) if seen.file != f && seen.trace != th as u32 => {
                            let (w, estimated) = (self.spans.weight(), self.spans.level > 0);
                            let p = self.pairs.entry(pair(seen.file, f)).or_default();
                            p.spans = p.spans.saturating_add(w);
                            p.spans_estimated |= estimated;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if self.group_files.is_empty() {
            return;
        }
        self.group_files.sort_unstable();
        if self.group_files.len() > 1 {
            self.find_repeating(spans);
        } else {
            self.repeating.clear();
        }
        let files = std::mem::take(&mut self.group_files);
        match self.traces.as_mut().filter(|t| t.admits(th)) {
            Some(sample) => {
                let (weight, level) = (sample.weight(), sample.level);
                match sample.map.get_mut(&th) {
                    None => {
                        let first = files[0];
                        let witness = spans.iter().find(|s| s.origin.file == first).map_or(0, |s| s.span_id.0 as u32);
                        let mut seen = TraceSeen { first, last: first, repeated_last: first, witness };
                        for &f in &files[1..] {
                            let repeated = self.repeating.contains(&f);
                            count_trace(&mut self.pairs, first, f, true, repeated, 1, false);
                            seen.last = f;
                            if repeated {
                                seen.repeated_last = f;
                            }
                        }
                        sample.insert(th, seen);
                    }
                    Some(seen) => {
                        let anchor = seen.first;
                        // Seen in this group: a non-sampled id would be
                        // counted here too, at weight 1; only across groups
                        // does the sample stand for the ids it does not hold.
                        let (w, estimated) = if files.contains(&anchor) { (1, false) } else { (weight, level > 0) };
                        for &f in files.iter().filter(|&&f| f != anchor) {
                            let new = f != seen.last;
                            // A trace may come in several groups per file:
                            // its repeated span in any of them counts once.
                            let repeated = f != seen.repeated_last
                                && (self.repeating.contains(&f)
                                    || spans.iter().any(|s| s.origin.file == f && s.span_id.0 as u32 == seen.witness));
                            count_trace(&mut self.pairs, anchor, f, new, repeated, w, estimated);
                            seen.last = f;
                            if repeated {
                                seen.repeated_last = f;
                            }
                        }
                    }
                }
            }
            None => {
                for &f in &files[1..] {
                    count_trace(&mut self.pairs, files[0], f, true, self.repeating.contains(&f), 1, false);
                }
            }
        }
        self.group_files = files;
    }

    /// The files of a group with a span id that another file of the group
    /// also has, into `self.repeating`.
    fn find_repeating(&mut self, spans: &[Span]) {
        self.repeating.clear();
        self.scratch.clear();
        self.scratch.extend(spans.iter().map(|s| (s.span_id, s.origin.file)));
        self.scratch.sort_unstable();
        self.scratch.dedup();
        for run in self.scratch.chunk_by(|a, b| a.0 == b.0) {
            if run.len() > 1 {
                for &(_, f) in run {
                    if !self.repeating.contains(&f) {
                        self.repeating.push(f);
                    }
                }
            }
        }
    }

    /// The warnings, naming `files` (the input files, in reading order).
    pub(crate) fn warnings(self, files: &[PathBuf]) -> Vec<InputWarning> {
        let path = |i: u32| files.get(i as usize).cloned().unwrap_or_default();
        let mut out = Vec::new();
        let mut pairs: Vec<_> = self.pairs.into_iter().collect();
        pairs.sort_unstable_by_key(|(k, _)| *k);
        for ((a, b), p) in pairs {
            let files = vec![path(a), path(b)];
            if p.traces > 0 && p.repeated > 0 {
                out.push(InputWarning {
                    kind: InputWarningKind::SharedTraceIds,
                    files,
                    others: Vec::new(),
                    count: p.traces,
                    repeated: p.repeated.min(p.traces),
                    estimated: p.traces_estimated,
                });
            } else if p.spans > 0 {
                out.push(InputWarning {
                    kind: InputWarningKind::SharedSpanIds,
                    files,
                    others: Vec::new(),
                    count: p.spans,
                    repeated: 0,
                    estimated: p.spans_estimated,
                });
            }
        }
        out.extend(disjoint_services(&self.files, &path));
        out
    }
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// Counts a trace id of files `a` and `b` (when `shared` is new) and a span
/// of it in both (when `repeated`), each standing for `weight` ids.
fn count_trace(
    pairs: &mut FxHashMap<(u32, u32), PairSeen>,
    a: u32,
    b: u32,
    shared: bool,
    repeated: bool,
    weight: u64,
    estimated: bool,
) {
    if !shared && !repeated {
        return;
    }
    let p = pairs.entry(pair(a, b)).or_default();
    if shared {
        p.traces = p.traces.saturating_add(weight);
    }
    if repeated {
        p.repeated = p.repeated.saturating_add(weight);
    }
    p.traces_estimated |= estimated;
}

/// Groups files that share a service (transitively); one warning per group
/// but the one with the most spans.
fn disjoint_services(files: &[FileSeen], path: &dyn Fn(u32) -> PathBuf) -> Vec<InputWarning> {
    let mut parent: Vec<usize> = (0..files.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut owner: FxHashMap<Sym, usize> = FxHashMap::default();
    for (i, f) in files.iter().enumerate() {
        for &sym in &f.services {
            let j = *owner.entry(sym).or_insert(i);
            let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
            if ri != rj {
                parent[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    // Groups in order of their first file; files without services are in none.
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        if file.services.is_empty() {
            continue;
        }
        let r = root(&mut parent, i);
        match groups.iter_mut().find(|(g, _)| *g == r) {
            Some((_, members)) => members.push(i),
            None => groups.push((r, vec![i])),
        }
    }
    if groups.len() < 2 {
        return Vec::new();
    }
    let spans = |members: &[usize]| members.iter().map(|&i| files[i].spans).sum::<u64>();
    let main = (0..groups.len()).max_by_key(|&g| (spans(&groups[g].1), std::cmp::Reverse(g))).unwrap_or_default();
    let mut out = Vec::new();
    for (g, (_, members)) in groups.iter().enumerate() {
        if g == main {
            continue;
        }
        let mut services: FxHashSet<Sym> = FxHashSet::default();
        for &i in members {
            services.extend(files[i].services.iter().copied());
        }
        let others = groups[main]
            .1
            .iter()
            .chain(groups.iter().enumerate().filter(|&(h, _)| h != main && h != g).flat_map(|(_, (_, m))| m))
            .map(|&i| path(i as u32))
            .collect();
        out.push(InputWarning {
            kind: InputWarningKind::DisjointServices,
            files: members.iter().map(|&i| path(i as u32)).collect(),
            others,
            count: services.len() as u64,
            repeated: 0,
            estimated: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Origin;

    fn span(trace: u128, id: u64, file: u32, service: u32) -> Span {
        Span {
            trace_id: TraceId::new(trace),
            span_id: SpanId(id),
            service: Sym(service),
            origin: Origin { file, line: 1 },
            ..Span::default()
        }
    }

    #[test]
    fn messages_read_as_one_line() {
        let w = InputWarning {
            kind: InputWarningKind::SharedTraceIds,
            files: vec!["ex/a.json".into(), "ex/b.jsonl".into()],
            others: Vec::new(),
            count: 1000,
            repeated: 1000,
            estimated: false,
        };
        assert_eq!(
            w.to_string(),
            "ex/a.json and ex/b.jsonl share 1,000 trace ids (the same traces in two files?); they are fitted as one input"
        );
        let w = InputWarning {
            kind: InputWarningKind::DisjointServices,
            files: vec!["f.jsonl".into()],
            others: vec!["a".into(), "b".into(), "c".into()],
            count: 4,
            repeated: 0,
            estimated: false,
        };
        assert_eq!(
            w.to_string(),
            "f.jsonl shares no service with the other inputs (a, b and 1 more): unrelated systems are fitted as one"
        );
    }

    #[test]
    fn a_trace_split_across_files_is_not_a_warning_but_a_repeated_one_is() {
        let mut t = OverlapTracker::new(3, false);
        // Split: different spans of trace 1 in files 0 and 1.
        t.group(TraceId::new(1), &[span(1, 1 << 40, 0, 1), span(1, 2 << 40, 1, 1)]);
        // Repeated: trace 2 in files 0 and 2 with the same span.
        t.group(TraceId::new(2), &[span(2, 3 << 40, 0, 1), span(2, 3 << 40, 2, 1)]);
        let w = t.warnings(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].kind, InputWarningKind::SharedTraceIds);
        assert_eq!(w[0].files, [PathBuf::from("a"), PathBuf::from("c")]);
        assert_eq!((w[0].count, w[0].repeated), (1, 1));
    }

    #[test]
    fn windowed_groups_of_one_trace_are_linked_across_files() {
        let mut t = OverlapTracker::new(2, true);
        for trace in 1..=50u128 {
            t.group(TraceId::new(trace), &[span(trace, trace as u64, 0, 1), span(trace, 1000 + trace as u64, 0, 2)]);
        }
        for trace in 1..=50u128 {
            t.group(TraceId::new(trace), &[span(trace, trace as u64, 1, 1), span(trace, 1000 + trace as u64, 1, 2)]);
        }
        let w = t.warnings(&["a".into(), "b".into()]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            (w[0].kind, w[0].count, w[0].repeated, w[0].estimated),
            (InputWarningKind::SharedTraceIds, 50, 50, false)
        );
    }

    #[test]
    fn the_same_spans_under_other_trace_ids_are_found() {
        let mut t = OverlapTracker::new(2, false);
        for k in 1..=40u64 {
            t.group(TraceId::new(k as u128), &[span(k as u128, k << 33, 0, 1)]);
            t.group(TraceId::new(k as u128 | 1 << 100), &[span(k as u128 | 1 << 100, k << 33, 1, 1)]);
        }
        let w = t.warnings(&["a".into(), "b".into()]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].kind, w[0].count), (InputWarningKind::SharedSpanIds, 40));
    }

    #[test]
    fn past_the_cap_shared_traces_are_estimated_from_a_bounded_sample() {
        let n = MAX_IDS as u128 + 200_000;
        let mut t = OverlapTracker::new(2, true);
        for file in 0..2 {
            for trace in 1..=n {
                // Only the first 100,000 traces repeat their span in file 1.
                let id = if file == 1 && trace > 100_000 { 7 } else { trace as u64 };
                t.group(TraceId::new(trace), &[span(trace, id, file, 1)]);
            }
        }
        let held = t.traces.as_ref().map_or(0, |s| s.map.len());
        assert!(held <= MAX_IDS, "{held}");
        let w = t.warnings(&["a".into(), "b".into()]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].estimated);
        let close = |got: u64, truth: u64| got.abs_diff(truth) < truth / 20;
        assert!(close(w[0].count, n as u64), "{} vs {n}", w[0].count);
        assert!(close(w[0].repeated, 100_000), "{}", w[0].repeated);
        assert!(w[0].to_string().contains("share about "), "{}", w[0]);
    }

    #[test]
    fn a_sample_stays_bounded_and_estimates() {
        let mut s: Sample<()> = Sample::new();
        for k in 0..(3 * MAX_IDS as u64) {
            let h = mix(k);
            if s.admits(h) {
                s.insert(h, ());
            }
        }
        assert!(s.map.len() <= MAX_IDS);
        assert!(s.level >= 2);
        let estimate = s.map.len() as u64 * s.weight();
        let truth = 3 * MAX_IDS as u64;
        assert!(estimate.abs_diff(truth) < truth / 20, "{estimate} vs {truth}");
    }
}
