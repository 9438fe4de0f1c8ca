//! Deployment choices recorded in [`Model::deploy`] for `palette generate`:
//! the work mode, the RPC transport, replicas and the tracing sample rate.

use serde::{Deserialize, Serialize};

use super::{Check, api, service_apis};
use crate::model::{Model, RpcMode, WorkMode, WorkRule};

/// How local work is produced, for the whole system or a service or API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkSpec {
    pub mode: WorkMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl WorkSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        if self.service.is_some() && self.api.is_some() {
            return Err("give `service` or `api`, not both".into());
        }
        if let Some(s) = &self.service {
            service_apis(m, s)?;
        }
        let api_name = match &self.api {
            Some(a) => Some(m.api_name(api(m, a)?)),
            None => None,
        };
        m.deploy.work.push(WorkRule { mode: self.mode, service: self.service.clone(), api: api_name });
        Ok(())
    }
}

/// Records the transport between services (`- rpc: grpc`).
pub fn apply_rpc(mode: RpcMode, m: &mut Model) {
    m.deploy.rpc = Some(mode.name().to_string());
}

/// Instances of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateSpec {
    pub service: String,
    /// How many (≥ 1).
    pub instances: u32,
}

impl ReplicateSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        service_apis(m, &self.service)?;
        if self.instances == 0 {
            return Err("`instances` must be at least 1".into());
        }
        if self.instances > crate::model::MAX_REPLICAS {
            return Err(format!("`instances` {} is more than {}", self.instances, crate::model::MAX_REPLICAS));
        }
        if self.instances == 1 {
            m.deploy.replicas.remove(&self.service);
        } else {
            m.deploy.replicas.insert(self.service.clone(), self.instances);
        }
        Ok(())
    }
}

/// The share of root requests the generated system traces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSpec {
    /// From 0 (no spans) to 1 (every request, the default).
    pub sample_rate: f64,
}

impl TracingSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(format!("`sample_rate` {} is not between 0 and 1", self.sample_rate));
        }
        m.deploy.sample_rate = (self.sample_rate != 1.0).then_some(self.sample_rate);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};

    #[test]
    fn recorded_for_generate() {
        let m = shop();
        let text = "- work: { mode: cpu }\n- work: { mode: memory, service: cart }\n\
                    - work: { mode: sleep, api: email/send }\n- rpc: grpc\n- replicate: { service: cart, instances: 3 }\n\
                    - tracing: { sample_rate: 0.25 }\n";
        let e = apply(&m, &parse(text).unwrap()).unwrap();
        assert_eq!(e.deploy.work.len(), 3);
        assert_eq!(e.deploy.work[1].service.as_deref(), Some("cart"));
        assert_eq!(e.deploy.work[2].api.as_deref(), Some("email send"));
        assert_eq!(e.deploy.rpc.as_deref(), Some("grpc"));
        assert_eq!(e.deploy.replicas.get("cart"), Some(&3));
        assert_eq!(e.deploy.sample_rate, Some(0.25));
        assert_eq!(e.apis, m.apis);
        let back: crate::Model = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
        let err = parse("- work: { mode: turbo }\n").unwrap_err().to_string();
        assert!(err.contains("entry 0 (work)") && err.contains("unknown variant `turbo`"), "{err}");
        let err = apply(&m, &parse("- replicate: { service: cart, instances: 65 }\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("more than 64"), "{err}");
        let err = apply(&m, &parse("- replicate: { service: cart, instances: 0 }\n").unwrap()).unwrap_err();
        assert!(err.to_string().contains("at least 1"));
        for bad in ["-0.5", "1.5", "2"] {
            let err = apply(&m, &parse(&format!("- tracing: {{ sample_rate: {bad} }}\n")).unwrap()).unwrap_err();
            assert!(err.to_string().contains("is not between 0 and 1"), "{err}");
        }
        let err = parse("- tracing: { rate: 0.5 }\n").unwrap_err().to_string();
        assert!(err.contains("entry 0 (tracing)") && err.contains("unknown field `rate`"), "{err}");
        // Back to every request: nothing left recorded.
        let again = apply(&e, &parse("- tracing: { sample_rate: 1 }\n").unwrap()).unwrap();
        assert_eq!(again.deploy.sample_rate, None);
    }
}
