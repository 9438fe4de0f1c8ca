//! Spreading calls over the instances of a service.
//!
//! A peer is a list of instance endpoints and a round-robin counter: every
//! call takes the next instance (per call, not per connection, so one
//! caller's keep-alive connections do not pin it to one instance). Each
//! endpoint keeps its own connections (the transports' pools).
//!
//! Locally the instances are fixed addresses (`127.0.0.1:port + i`). In
//! containers (peers by DNS) a service's name resolves to every instance's
//! address (compose's replicas, a Kubernetes headless Service), so even a
//! single instance is reached by the addresses its name resolved to, not by
//! the name: a connection to a name looks it up first, and under Docker's
//! embedded DNS that lookup, paid by every new connection, showed in the
//! measured tail latency. The name is resolved again every
//! [`RESOLVE_EVERY`] in the background (calls keep using the addresses
//! known), and before the next call after a call could not connect, so
//! instances that come and go are followed. An endpoint that stays in the
//! answer keeps its connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
            PeerHosts::Dns => Instances::Resolved(s.peer_address(hosts)),
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

/// A name's instances, shared with the background lookup that refreshes them.
struct Resolver<E> {
    /// `host:port`, looked up.
    name: String,
    set: Mutex<ResolvedSet<E>>,
    /// Held by the one call looking the name up while others wait for an
    /// answer (none known yet, or the last call could not connect).
    refreshing: tokio::sync::Mutex<()>,
    /// A periodic lookup is running in the background: no second one.
    refreshing_in_background: AtomicBool,
}

impl<E: Endpoint> Resolver<E> {
    fn set(&self) -> std::sync::MutexGuard<'_, ResolvedSet<E>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks the name up and takes the answer; an error only when no
    /// instance is known at all (a failed lookup keeps the known ones).
    async fn look_up(&self) -> Result<(), CallError> {
        let looked_up = tokio::net::lookup_host(self.name.as_str()).await;
        let mut set = self.set();
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
            Err(source) if set.endpoints.is_empty() => {
                return Err(CallError::Connect { peer: self.name.clone(), source });
            }
            // No answer now: keep the instances known.
            Err(_) => set.at = Some(Instant::now()),
        }
        if set.endpoints.is_empty() {
            return Err(CallError::Connect {
                peer: self.name.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address"),
            });
        }
        Ok(())
    }
}

/// A service as a caller sees it: its instances and whose turn it is.
pub struct Balanced<E> {
    /// For messages: the address peers use.
    name: String,
    /// The instances, when their addresses are known up front (locally).
    fixed: Vec<Arc<E>>,
    /// `Some` when the instances come from DNS.
    resolved: Option<Arc<Resolver<E>>>,
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
                next: AtomicUsize::new(0),
            },
            Instances::Resolved(name) => Balanced {
                name: name.clone(),
                fixed: Vec::new(),
                resolved: Some(Arc::new(Resolver {
                    name,
                    set: Mutex::new(ResolvedSet { endpoints: Vec::new(), at: None }),
                    refreshing: tokio::sync::Mutex::new(()),
                    refreshing_in_background: AtomicBool::new(false),
                })),
                next: AtomicUsize::new(0),
            },
        }
    }

    /// The instance the next call goes to.
    pub async fn pick(&self) -> Result<Arc<E>, CallError> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(resolver) = &self.resolved else {
            let instance = self.fixed.get(turn % self.fixed.len().max(1)).cloned();
            return instance
                .ok_or_else(|| CallError::Protocol { peer: self.name.clone(), message: "no instance".into() });
        };
        let known = |set: &ResolvedSet<E>| {
            (!set.endpoints.is_empty()).then(|| set.endpoints[turn % set.endpoints.len()].clone())
        };
        let fresh = {
            let set = resolver.set();
            match (set.at, known(&set)) {
                (Some(at), Some(e)) => {
                    if at.elapsed() >= RESOLVE_EVERY && !resolver.refreshing_in_background.swap(true, Ordering::AcqRel)
                    {
                        let resolver = resolver.clone();
                        tokio::spawn(async move {
                            let _ = resolver.look_up().await;
                            resolver.refreshing_in_background.store(false, Ordering::Release);
                        });
                    }
                    return Ok(e);
                }
                (_, e) => e.is_none(),
            }
        };
        // Nothing known yet, or the last call could not connect: this call waits for an answer.
        let _refreshing = if fresh {
            resolver.refreshing.lock().await
        } else {
            match resolver.refreshing.try_lock() {
                Ok(guard) => guard,
                // Another call is looking the name up: the known addresses do meanwhile.
                Err(_) => return known(&resolver.set()).ok_or_else(|| self.no_instance()),
            }
        };
        // Looked up while this call waited its turn to.
        {
            let set = resolver.set();
            if let (Some(_), Some(e)) = (set.at, known(&set)) {
                return Ok(e);
            }
        }
        resolver.look_up().await?;
        known(&resolver.set()).ok_or_else(|| self.no_instance())
    }

    fn no_instance(&self) -> CallError {
        CallError::Protocol { peer: self.name.clone(), message: "no instance".into() }
    }

    /// A call could not connect: with instances from DNS, look the name up
    /// again before the next call (the instance may be gone).
    pub fn unreachable(&self) {
        if let Some(resolver) = &self.resolved {
            resolver.set().at = None;
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
        let n = b.resolved.as_ref().unwrap().set().endpoints.len();
        assert!(n >= 1);
        // Looked up again after a failed connect: an address still there keeps its endpoint (its connections).
        b.unreachable();
        let again = b.pick().await.unwrap();
        let set = b.resolved.as_ref().unwrap().set();
        assert!(set.at.is_some());
        assert!(set.endpoints.iter().any(|e| Arc::ptr_eq(e, &first)), "the endpoint of {} is kept", first.0);
        assert!(set.endpoints.iter().any(|e| Arc::ptr_eq(e, &again)));
    }

    #[tokio::test]
    async fn a_stale_answer_is_refreshed_in_the_background_while_calls_go_on() {
        let b = Balanced::<Named>::new(Instances::Resolved("localhost:7".into()));
        let first = b.pick().await.unwrap();
        let resolver = b.resolved.as_ref().unwrap().clone();
        let long_ago = Instant::now().checked_sub(RESOLVE_EVERY * 2).expect("a monotonic clock this old");
        resolver.set().at = Some(long_ago);
        // The call is not held up by the lookup: it gets a known instance at once.
        let during = b.pick().await.unwrap();
        assert!(resolver.set().endpoints.iter().any(|e| Arc::ptr_eq(e, &during)));
        let waited = Instant::now();
        while resolver.set().at == Some(long_ago) {
            assert!(waited.elapsed() < Duration::from_secs(10), "no background lookup");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(resolver.set().endpoints.iter().any(|e| Arc::ptr_eq(e, &first)), "endpoints (connections) kept");
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
        // One instance too: reached by the addresses its name resolves to.
        assert_eq!(Instances::of(&s, PeerHosts::Dns), Instances::Resolved("cart:7001".into()));
    }
}
