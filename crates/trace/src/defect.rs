//! The defect report: what was wrong with the input and what was done about it.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;

/// A kind of defect found in input traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefectKind {
    /// A record that cannot be parsed (non-numeric time, missing field).
    BadRecord,
    /// A span whose parent is not in its trace.
    Orphan,
    /// A trace with more than one root after orphans are handled.
    MultipleRoots,
    /// Two spans of one trace with the same id and different content.
    DuplicateSpanId,
    /// A record seen twice, identically.
    DuplicateRecord,
    /// Parent links that form a cycle.
    Cycle,
    /// A span with negative duration.
    NegativeDuration,
    /// A child that starts before its parent (clock skew between hosts).
    ChildOutsideParent,
    /// Zipkin client and server halves sharing one span id.
    SharedSpanId,
    /// A Zipkin span without a timestamp.
    MissingTimestamp,
    /// A span without a service name (Zipkin missing localEndpoint, empty column).
    MissingService,
    /// An Alibaba name recorded as UNKNOWN, (?), NAN or empty.
    UnknownName,
    /// An Alibaba call whose caller and callee are the same service and interface.
    SelfCall,
}

impl DefectKind {
    pub const ALL: [DefectKind; 13] = [
        DefectKind::BadRecord,
        DefectKind::Orphan,
        DefectKind::MultipleRoots,
        DefectKind::DuplicateSpanId,
        DefectKind::DuplicateRecord,
        DefectKind::Cycle,
        DefectKind::NegativeDuration,
        DefectKind::ChildOutsideParent,
        DefectKind::SharedSpanId,
        DefectKind::MissingTimestamp,
        DefectKind::MissingService,
        DefectKind::UnknownName,
        DefectKind::SelfCall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DefectKind::BadRecord => "bad_record",
            DefectKind::Orphan => "orphan",
            DefectKind::MultipleRoots => "multiple_roots",
            DefectKind::DuplicateSpanId => "duplicate_span_id",
            DefectKind::DuplicateRecord => "duplicate_record",
            DefectKind::Cycle => "cycle",
            DefectKind::NegativeDuration => "negative_duration",
            DefectKind::ChildOutsideParent => "child_outside_parent",
            DefectKind::SharedSpanId => "shared_span_id",
            DefectKind::MissingTimestamp => "missing_timestamp",
            DefectKind::MissingService => "missing_service",
            DefectKind::UnknownName => "unknown_name",
            DefectKind::SelfCall => "self_call",
        }
    }

    pub fn parse(s: &str) -> Option<DefectKind> {
        DefectKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// What `repair` means for this kind, for `--help` and the report.
    pub fn repair(self) -> &'static str {
        match self {
            DefectKind::BadRecord => "skip the record",
            DefectKind::Orphan => "attach to the nearest recorded ancestor, else make it a root",
            DefectKind::MultipleRoots => "keep the largest root's tree, drop the rest",
            DefectKind::DuplicateSpanId => "keep the first span with the id",
            DefectKind::DuplicateRecord => "keep one copy",
            DefectKind::Cycle => "drop the trace",
            DefectKind::NegativeDuration => "use the absolute value",
            DefectKind::ChildOutsideParent => "shift the child's subtree to start inside its parent",
            DefectKind::SharedSpanId => "split into a client span and a server child",
            DefectKind::MissingTimestamp => "merge with the record of the same span, else drop the span",
            DefectKind::MissingService => "name the service `unknown`",
            DefectKind::UnknownName => "name it `unknown`",
            DefectKind::SelfCall => "keep as a local call",
        }
    }

    /// The policy used when the user sets none. Data that cannot be
    /// understood at all fails; everything with a sound repair is repaired.
    pub fn default_policy(self) -> Policy {
        match self {
            DefectKind::BadRecord => Policy::Fail,
            DefectKind::Cycle => Policy::Drop,
            _ => Policy::Repair,
        }
    }
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to do about a defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Fix it (see [`DefectKind::repair`]) and count it.
    Repair,
    /// Drop the trace (or, for a bad record, the record) and count it.
    Drop,
    /// Stop with an error naming the file and line or the trace.
    Fail,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "repair" => Some(Policy::Repair),
            "drop" => Some(Policy::Drop),
            "fail" => Some(Policy::Fail),
            _ => None,
        }
    }
}

/// The policy for every defect kind.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    /// Overrides of [`DefectKind::default_policy`].
    overrides: BTreeMap<DefectKind, Policy>,
    /// `--strict`: every defect without an override fails.
    strict: bool,
}

impl Policies {
    pub fn strict() -> Policies {
        Policies { overrides: BTreeMap::new(), strict: true }
    }
    pub fn set(&mut self, kind: DefectKind, policy: Policy) {
        self.overrides.insert(kind, policy);
    }
    /// Parses `kind=policy`, as `--on-defect` takes it.
    pub fn set_from_str(&mut self, spec: &str) -> Result<(), String> {
        let (k, p) = spec.split_once('=').ok_or_else(|| format!("`{spec}` is not KIND=POLICY"))?;
        let kind = DefectKind::parse(k.trim()).ok_or_else(|| {
            let all: Vec<_> = DefectKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown defect kind `{k}` (one of {})", all.join(", "))
        })?;
        let policy =
            Policy::parse(p.trim()).ok_or_else(|| format!("unknown policy `{p}` (one of repair, drop, fail)"))?;
        self.set(kind, policy);
        Ok(())
    }
    pub fn policy(&self, kind: DefectKind) -> Policy {
        match self.overrides.get(&kind) {
            Some(&p) => p,
            None if self.strict => Policy::Fail,
            None => kind.default_policy(),
        }
    }
}

/// Counts of each defect, with the first place each was seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefectReport {
    /// Per kind: how often, and where first.
    pub counts: BTreeMap<DefectKind, DefectCount>,
    /// Traces dropped by a `drop` policy.
    pub dropped_traces: u64,
    /// Spans lost with dropped traces, subtrees or records.
    pub dropped_spans: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefectCount {
    pub count: u64,
    /// File and line, or trace id, of the first occurrence.
    pub first: String,
}

impl DefectReport {
    /// Counts a defect at `location` and says what the policy is; `Fail`
    /// becomes an error.
    pub fn record(
        &mut self,
        policies: &Policies,
        kind: DefectKind,
        location: impl FnOnce() -> String,
        detail: impl FnOnce() -> String,
    ) -> Result<Policy, Error> {
        let policy = policies.policy(kind);
        if policy == Policy::Fail {
            return Err(Error::Defect { kind, location: location(), detail: detail() });
        }
        let entry = self.counts.entry(kind).or_default();
        if entry.count == 0 {
            entry.first = location();
        }
        entry.count += 1;
        Ok(policy)
    }
    /// Adds another report's counts (the first location seen is kept).
    pub fn merge(&mut self, other: DefectReport) {
        for (kind, c) in other.counts {
            let entry = self.counts.entry(kind).or_default();
            if entry.count == 0 {
                entry.first = c.first;
            }
            entry.count += c.count;
        }
        self.dropped_traces += other.dropped_traces;
        self.dropped_spans += other.dropped_spans;
    }

    pub fn count(&self, kind: DefectKind) -> u64 {
        self.counts.get(&kind).map_or(0, |c| c.count)
    }
    pub fn total(&self) -> u64 {
        self.counts.values().map(|c| c.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_fails_and_overrides_win() {
        let mut p = Policies::strict();
        assert_eq!(p.policy(DefectKind::Orphan), Policy::Fail);
        p.set_from_str("orphan=repair").unwrap();
        assert_eq!(p.policy(DefectKind::Orphan), Policy::Repair);
        assert!(p.set_from_str("nope=repair").is_err());
        assert!(p.set_from_str("orphan=maybe").is_err());
    }

    #[test]
    fn names_round_trip() {
        for k in DefectKind::ALL {
            assert_eq!(DefectKind::parse(k.name()), Some(k));
        }
    }
}
