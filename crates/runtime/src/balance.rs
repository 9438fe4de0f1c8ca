//! Spreading calls over the instances of a replicated service.
//!
//! A peer is a list of instance endpoints and a round-robin counter: every
//! call takes the next instance (per call, not per connection, so one
//! caller's keep-alive connections do not pin it to one instance). Each
//! endpoint keeps its own connections (the transports' pools).
//!
//! Locally the instances are fixed addresses (`127.0.0.1:port + i`). In
//! containers (peers by DNS) the instances of a replicated service share one
//! name that resolves to every instance's address (compose's replicas, a
//! Kubernetes headless Service): the name is resolved again every
//! [`RESOLVE_EVERY`], and at once after a call could not connect, so
//! instances that come and go are followed. An endpoint that stays in the
//! answer keeps its connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{PeerHosts, ServiceConfig};
use crate::transport::CallError;

/// How long a resolved set of instance addresses is used before the name is resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Where a service's instances are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instances {
    /// These `host:port` addresses, one per instance.
    Fixed(Vec<String>),
    /// Every address `host:port` resolves to.
    Resolved(String),
}

impl Instances {
    /// The instances of `s` as a process reaching peers by `hosts` sees them.
    pub fn of(s: &ServiceConfig, hosts: PeerHosts) -> Instances {
        match hosts {
            PeerHosts::Loopback => Instances::Fixed(s.ports().map(|p| format!("127.0.0.1:{p}")).collect()),
            PeerHosts::Dns if s.instances > 1 => Instances::Resolved(s.peer_address(hosts)),
            PeerHosts::Dns => Instances::Fixed(vec![s.peer_address(hosts)]),
        }
    }
}

/// One instance's state in a transport: built from its `host:port`.
pub trait Endpoint: Send + Sync + 'static {
    fn new(addr: String) -> Self;
    fn addr(&self) -> &str;
}

struct ResolvedSet<E> {
    /// The instances the last lookup answered, sorted by address.
    endpoints: Vec<Arc<E>>,
    /// `None`: resolve before the next call.
    at: Option<Instant>,
}

/// A service as a caller sees it: its instances and whose turn it is.
pub struct Balanced<E> {
    /// For messages: the address peers use.
    name: String,
    /// The instances, when their addresses are known up front (locally).
    fixed: Vec<Arc<E>>,
    /// `Some` when the instances come from DNS.
    resolved: Option<Mutex<ResolvedSet<E>>>,
    /// Held by the one call looking the name up; the others meanwhile use
    /// the addresses known (or, with none yet, wait for the answer).
    refreshing: tokio::sync::Mutex<()>,
    /// Calls made so far: the next call's turn.
    next: AtomicUsize,
}

impl<E: Endpoint> Balanced<E> {
    pub fn new(instances: Instances) -> Balanced<E> {
        match instances {
            Instances::Fixed(addrs) => Balanced {
                name: addrs.first().cloned().unwrap_or_default(),
                fixed: addrs.into_iter().map(|a| Arc::new(E::new(a))).collect(),
                resolved: None,
                refreshing: tokio::sync::Mutex::new(()),
                next: AtomicUsize::new(0),
            },
            Instances::Resolved(name) => Balanced {
                name,
                fixed: Vec::new(),
                resolved: Some(Mutex::new(ResolvedSet { endpoints: Vec::new(), at: None })),
                refreshing: tokio::sync::Mutex::new(()),
                next: AtomicUsize::new(0),
            },
        }
    }

    /// The instance the next call goes to.
    pub async fn pick(&self) -> Result<Arc<E>, CallError> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(resolved) = &self.resolved else {
            let instance = self.fixed.get(turn % self.fixed.len().max(1)).cloned();
            return instance
                .ok_or_else(|| CallError::Protocol { peer: self.name.clone(), message: "no instance".into() });
        };
        let current = |set: &ResolvedSet<E>| match set.at {
            Some(at) if at.elapsed() < RESOLVE_EVERY && !set.endpoints.is_empty() => {
                Some(set.endpoints[turn % set.endpoints.len()].clone())
            }
            _ => None,
        };
        let fresh = {
            let set = resolved.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = current(&set) {
                return Ok(e);
            }
            set.endpoints.is_empty()
        };
        let _refreshing = if fresh {
            self.refreshing.lock().await
        } else {
            match self.refreshing.try_lock() {
                Ok(guard) => guard,
                // Another call is looking the name up: the known addresses do meanwhile.
                Err(_) => {
                    let set = resolved.lock().unwrap_or_else(|e| e.into_inner());
                    return Ok(set.endpoints[turn % set.endpoints.len()].clone());
                }
            }
        };
        // Looked up while this call waited its turn to.
        if let Some(e) = current(&resolved.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(e);
        }
        let looked_up = tokio::net::lookup_host(self.name.as_str()).await;
        let mut set = resolved.lock().unwrap_or_else(|e| e.into_inner());
        match looked_up {
            Ok(addrs) => {
                let mut addrs: Vec<String> = addrs.map(|a| a.to_string()).collect();
                // The resolver's order rotates; a stable one keeps the turns fair.
                addrs.sort();
                addrs.dedup();
                if !addrs.is_empty() {
                    let old = std::mem::take(&mut set.endpoints);
                    set.endpoints = addrs
                        .into_iter()
                        .map(|a| old.iter().find(|e| e.addr() == a).cloned().unwrap_or_else(|| Arc::new(E::new(a))))
                        .collect();
                }
                set.at = Some(Instant::now());
            }
            // No answer now: keep the instances known, if any.
            Err(source) if fresh || set.endpoints.is_empty() => {
                return Err(CallError::Connect { peer: self.name.clone(), source });
            }
            Err(_) => set.at = Some(Instant::now()),
        }
        if set.endpoints.is_empty() {
            return Err(CallError::Connect {
                peer: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address"),
            });
        }
        Ok(set.endpoints[turn % set.endpoints.len()].clone())
    }

    /// A call could not connect: with instances from DNS, look the name up
    /// again before the next call (the instance may be gone).
    pub fn unreachable(&self) {
        if let Some(resolved) = &self.resolved {
            resolved.lock().unwrap_or_else(|e| e.into_inner()).at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(String);

    impl Endpoint for Named {
        fn new(addr: String) -> Named {
            Named(addr)
        }
        fn addr(&self) -> &str {
            &self.0
        }
    }

    #[tokio::test]
    async fn calls_take_the_instances_in_turn() {
        let b = Balanced::<Named>::new(Instances::Fixed(vec!["a:1".into(), "b:1".into(), "c:1".into()]));
        let mut picked = Vec::new();
        for _ in 0..7 {
            picked.push(b.pick().await.unwrap().0.clone());
        }
        assert_eq!(picked, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1", "a:1"]);
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to_and_keeps_their_state() {
        let b = Balanced::<Named>::new(Instances::Resolved("localhost:7".into()));
        let first = b.pick().await.unwrap();
        assert!(first.0.ends_with(":7"), "{}", first.0);
        let n = b.resolved.as_ref().unwrap().lock().unwrap().endpoints.len();
        assert!(n >= 1);
        // Looked up again after a failed connect: an address still there keeps its endpoint (its connections).
        b.unreachable();
        let again = b.pick().await.unwrap();
        let set = b.resolved.as_ref().unwrap().lock().unwrap();
        assert!(set.at.is_some());
        assert!(set.endpoints.iter().any(|e| Arc::ptr_eq(e, &first)), "the endpoint of {} is kept", first.0);
        assert!(set.endpoints.iter().any(|e| Arc::ptr_eq(e, &again)));
    }

    #[test]
    fn instances_of_a_service() {
        let mut s = crate::config::ServiceConfig {
            name: "cart".into(),
            host: "cart".into(),
            port: 7001,
            instances: 3,
            apis: vec![],
        };
        assert_eq!(
            Instances::of(&s, PeerHosts::Loopback),
            Instances::Fixed(vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into(), "127.0.0.1:7003".into()])
        );
        assert_eq!(Instances::of(&s, PeerHosts::Dns), Instances::Resolved("cart:7001".into()));
        s.instances = 1;
        assert_eq!(Instances::of(&s, PeerHosts::Dns), Instances::Fixed(vec!["cart:7001".into()]));
    }
}
