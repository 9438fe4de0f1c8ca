//! `scale_latency` (local work) and `scale_payload` (request and response
//! sizes).

use serde::{Deserialize, Serialize};

use super::graph::cond_map;
use super::{Check, positive, service_apis, target};
use crate::model::Model;

/// Scales the local work of a service's APIs (or one API's): every
/// transition's work sketch, and a leaf API's latency (its work).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleLatencySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Multiplier (> 0): 0.5 halves the work.
    pub factor: f64,
}

impl ScaleLatencySpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        positive("factor", self.factor, false)?;
        let k = self.factor;
        for id in target(m, &self.service, &self.api)? {
            let a = &mut m.apis[id as usize];
            for t in a.states.iter_mut().flat_map(|s| s.next.iter_mut()) {
                cond_map(&mut t.work, &|s| s.scaled(k));
            }
            if let Some(naive) = &mut a.naive {
                naive.work = naive.work.scaled(k);
            }
            let leaf = a.states.is_empty() && a.naive.as_ref().is_none_or(|n| n.calls.is_empty());
            if leaf {
                a.latency = a.latency.scaled(k);
            }
        }
        Ok(())
    }
}

/// Scales request and response sizes, of one service's APIs or all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalePayloadSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Multiplier (> 0).
    pub factor: f64,
}

impl ScalePayloadSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        positive("factor", self.factor, false)?;
        let ids = match &self.service {
            Some(s) => service_apis(m, s)?,
            None => (0..m.apis.len() as u32).collect(),
        };
        for id in ids {
            let a = &mut m.apis[id as usize];
            for s in [&mut a.request_bytes, &mut a.response_bytes].into_iter().flatten() {
                *s = s.scaled(self.factor);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};

    #[test]
    fn scale_latency_scales_work() {
        let m = shop();
        let e = apply(&m, &parse("- scale_latency: { service: cart, factor: 0.5 }\n").unwrap()).unwrap();
        let (a, b) = (&m.apis[0].latency, &e.apis[0].latency);
        assert!((b.mean() - a.mean() / 2.0).abs() / a.mean() < 0.02);
        let e = apply(&m, &parse("- scale_latency: { api: frontend home, factor: 2 }\n").unwrap()).unwrap();
        let w = |m: &crate::Model| m.apis[2].states[0].next[0].work.all.mean();
        assert!((w(&e) / w(&m) - 2.0).abs() < 0.03);
        assert_eq!(e.apis[0], m.apis[0]);
        let err = apply(&m, &parse("- scale_latency: { service: cart, factor: -1 }\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("`factor` must be a number > 0"), "{err}");
    }

    #[test]
    fn scale_payload_scales_sizes() {
        let m = shop();
        let e = apply(&m, &parse("- scale_payload: { factor: 10 }\n").unwrap()).unwrap();
        let (a, b) = (m.apis[0].request_bytes.as_ref().unwrap(), e.apis[0].request_bytes.as_ref().unwrap());
        assert!((b.mean() / a.mean() - 10.0).abs() < 0.2, "{} {}", a.mean(), b.mean());
    }
}
