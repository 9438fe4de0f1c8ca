//! Span ids for Alibaba rpc ids (`0.1.2`, whose parent is `0.1`).
//!
//! Short paths — up to seven components, each below 255, which is nearly
//! every call — are packed into the id itself, so a parent or ancestor is
//! arithmetic and costs no lookup per row. Longer paths are interned, and
//! their parents kept in [`RpcParents`] the first time they are seen.

use crate::span::{SpanId, Sym};

/// Marks a packed id; interned ids are symbols, far below this bit.
const PACKED: u64 = 1 << 62;

/// Packs `0.1.2` as bytes `[1, 2, 3]` (component + 1, last in the lowest
/// byte), or `None` if the path does not fit.
pub fn pack(path: &[u8]) -> Option<SpanId> {
    let mut id: u64 = 0;
    for (depth, component) in path.split(|&b| b == b'.').enumerate() {
        if depth == 7 || component.is_empty() || component.len() > 3 {
            return None;
        }
        let mut v: u64 = 0;
        for &d in component {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (d - b'0') as u64;
        }
        if v > 254 {
            return None;
        }
        id = (id << 8) | (v + 1);
    }
    Some(SpanId(id | PACKED))
}

/// The id of an interned path.
pub fn interned(sym: Sym) -> SpanId {
    SpanId(sym.0 as u64)
}

/// Parents of interned (long) rpc ids; packed ids need no entry.
#[derive(Clone, Debug, Default)]
pub struct RpcParents {
    /// Indexed by the interned path's symbol; 0 for none.
    up: Vec<u64>,
}

impl RpcParents {
    /// Records the parent of an interned path.
    pub fn link(&mut self, child: SpanId, parent: SpanId) {
        let i = child.0 as usize;
        if self.up.len() <= i {
            self.up.resize(i + 1, 0);
        }
        self.up[i] = parent.0;
    }

    /// The parent rpc id of `id`; `SpanId(0)` for a top-level id or one never linked.
    pub fn parent(&self, id: SpanId) -> SpanId {
        if id.0 & PACKED != 0 {
            let up = (id.0 & !PACKED) >> 8;
            return SpanId(if up == 0 { 0 } else { up | PACKED });
        }
        SpanId(self.up.get(id.0 as usize).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_parents_are_prefixes() {
        let t = RpcParents::default();
        let id = pack(b"0.1.2").unwrap();
        assert_eq!(t.parent(id), pack(b"0.1").unwrap());
        assert_eq!(t.parent(pack(b"0.1").unwrap()), pack(b"0").unwrap());
        assert_eq!(t.parent(pack(b"0").unwrap()), SpanId(0));
        assert_ne!(pack(b"0.1.2"), pack(b"0.12"));
        assert_eq!(pack(b"0.1.2.3.4.5.6.7"), None);
        assert_eq!(pack(b"0.255"), None);
        assert_eq!(pack(b"0..1"), None);
    }

    #[test]
    fn interned_parents_come_from_links() {
        let mut t = RpcParents::default();
        t.link(interned(Sym(9)), pack(b"0.1").unwrap());
        assert_eq!(t.parent(interned(Sym(9))), pack(b"0.1").unwrap());
        assert_eq!(t.parent(interned(Sym(3))), SpanId(0));
    }
}
