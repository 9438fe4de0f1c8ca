//! Assembled call trees: one execution per API call, calls as edges.

use crate::span::{Api, Sym, TraceId};

/// How a caller reached a callee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKind {
    /// The root execution: nobody in the trace called it.
    Root,
    /// A call inside one service (an internal span of the same service).
    Local,
    /// A call across services (or through a client/server span pair).
    Rpc,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Root => "root",
            EdgeKind::Local => "local",
            EdgeKind::Rpc => "rpc",
        }
    }
}

/// `Exec::parent` of the root.
pub const NO_PARENT: u32 = u32::MAX;

/// One execution of an API: a server (or internal) span, with the client span
/// that called it folded into the call.
#[derive(Clone, Debug, PartialEq)]
pub struct Exec {
    /// The API that did the work.
    pub api: Api,
    /// Index of the calling execution, [`NO_PARENT`] for the root.
    pub parent: u32,
    /// This execution's calls are `execs[first_child..first_child + child_count]`,
    /// ordered by call start.
    pub first_child: u32,
    pub child_count: u32,
    /// How the caller reached this execution.
    pub edge: EdgeKind,
    /// Transport when known (`http`, `grpc`, Alibaba's `rpc`, `db`, `mc`, `mq`…).
    pub protocol: Sym,
    /// The callee's own execution: start and duration in nanoseconds.
    pub start_ns: i64,
    pub duration_ns: i64,
    /// The call as its caller saw it (the folded client span); equal to the
    /// execution when no caller-side record exists.
    pub call_start_ns: i64,
    pub call_duration_ns: i64,
    /// The execution recorded an error.
    pub error: bool,
    /// The caller does not wait for this call (FOLLOWS_FROM, messaging).
    pub detached: bool,
    pub request_bytes: Option<u32>,
    pub response_bytes: Option<u32>,
}

impl Exec {
    pub fn end_ns(&self) -> i64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
    pub fn call_end_ns(&self) -> i64 {
        self.call_start_ns.saturating_add(self.call_duration_ns)
    }
    pub fn children(&self) -> std::ops::Range<usize> {
        self.first_child as usize..(self.first_child + self.child_count) as usize
    }
    pub fn is_root(&self) -> bool {
        self.parent == NO_PARENT
    }
}

/// One assembled, repaired trace. Executions are in breadth-first order:
/// `execs[0]` is the root and every execution's calls are contiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct CallTree {
    pub trace_id: TraceId,
    /// Canonical spans this trace was built from, client spans included.
    pub span_count: u32,
    pub execs: Vec<Exec>,
}

impl CallTree {
    pub fn root(&self) -> &Exec {
        &self.execs[0]
    }
    pub fn children(&self, i: usize) -> &[Exec] {
        &self.execs[self.execs[i].children()]
    }
    /// Depth of every execution (root = 1), in `execs` order.
    pub fn depths(&self) -> Vec<u32> {
        let mut depth = vec![1u32; self.execs.len()];
        for i in 1..self.execs.len() {
            depth[i] = depth[self.execs[i].parent as usize] + 1;
        }
        depth
    }
    /// Longest root-to-leaf path, in executions.
    pub fn depth(&self) -> u32 {
        self.depths().into_iter().max().unwrap_or(0)
    }
}
