//! Resilience policies recorded in [`Model::deploy`]'s `resilience`
//! section (timeouts, retries, circuit breakers), and `error_rate`, which
//! sets an API's own failure probability. The policies act on calls in the
//! simulator and the runtime alike.

use serde::{Deserialize, Serialize};

use super::{Check, api, service_apis};
use crate::model::{BreakerRule, Failures, Model, RetryRule, TimeoutRule};

/// The most a timeout, backoff or open circuit may last: an hour.
const MAX_MS: f64 = 3_600_000.0;
/// The most tries of one call.
const MAX_ATTEMPTS: u32 = 100;

fn check_ms(name: &str, ms: f64, zero_ok: bool) -> Check {
    if !(ms > 0.0 || (zero_ok && ms == 0.0)) || ms > MAX_MS {
        let low = if zero_ok { "0" } else { "more than 0" };
        return Err(format!("`{name}` must be {low} and at most {MAX_MS} (an hour), not {ms}"));
    }
    Ok(())
}

/// `timeout: { caller: S, callee: S2, ms: 100 }`: a call from S (any
/// caller when omitted) to S2 fails with 504 once it has taken `ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub callee: String,
    pub ms: f64,
}

impl TimeoutSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        if let Some(c) = &self.caller {
            service_apis(m, c)?;
        }
        service_apis(m, &self.callee)?;
        check_ms("ms", self.ms, false)?;
        m.deploy.resilience.timeouts.push(TimeoutRule {
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            ms: self.ms,
        });
        Ok(())
    }
}

/// `retry: { callee: S2, attempts: 3, backoff_ms: 10, on: [503, 504] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub callee: String,
    pub attempts: u32,
    #[serde(default)]
    pub backoff_ms: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<u16>,
}

impl RetrySpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        service_apis(m, &self.callee)?;
        if self.attempts == 0 || self.attempts > MAX_ATTEMPTS {
            return Err(format!(
                "`attempts` counts every try, the first included: 1 to {MAX_ATTEMPTS}, not {}",
                self.attempts
            ));
        }
        check_ms("backoff_ms", self.backoff_ms, true)?;
        if let Some(bad) = self.on.iter().find(|s| !(500..=599).contains(*s)) {
            return Err(format!("`on` lists failure statuses (500, 502, 503, 504), not {bad}"));
        }
        m.deploy.resilience.retries.push(RetryRule {
            callee: self.callee.clone(),
            attempts: self.attempts,
            backoff_ms: self.backoff_ms,
            on: self.on.clone(),
        });
        Ok(())
    }
}

/// `circuit_breaker: { callee: S2, failures: 5, open_ms: 1000 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    pub callee: String,
    pub failures: u32,
    pub open_ms: f64,
}

impl BreakerSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        service_apis(m, &self.callee)?;
        if self.failures == 0 {
            return Err("`failures` (failed calls in a row that open the circuit) must be at least 1".into());
        }
        check_ms("open_ms", self.open_ms, false)?;
        m.deploy.resilience.breakers.push(BreakerRule {
            callee: self.callee.clone(),
            failures: self.failures,
            open_ms: self.open_ms,
        });
        Ok(())
    }
}

/// `error_rate: { api: "S OP", probability: 0.05 }`: the API fails of
/// itself with this probability, whoever calls it (what it does with its
/// calls' failures stays as learned).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateSpec {
    pub api: String,
    pub probability: f64,
}

impl ErrorRateSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        let id = api(m, &self.api)?;
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!("`probability` must be between 0 and 1, not {}", self.probability));
        }
        let a = &mut m.apis[id as usize];
        a.failures.get_or_insert_with(Failures::default).forced = Some(self.probability);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::shop;
    use super::super::{apply, parse};

    #[test]
    fn policies_are_recorded_and_checked() {
        let m = shop();
        let text = "- timeout: { caller: frontend, callee: cart, ms: 100 }\n\
                    - retry: { callee: cart, attempts: 3, backoff_ms: 10, on: [504] }\n\
                    - circuit_breaker: { callee: cart, failures: 5, open_ms: 1000 }\n";
        let e = apply(&m, &parse(text).unwrap()).unwrap();
        let r = &e.deploy.resilience;
        assert_eq!(r.timeout_ms("frontend", "cart"), Some(100.0));
        assert_eq!(r.timeout_ms("cart", "cart"), None, "the rule names its caller");
        let retry = r.retry("cart").unwrap();
        assert!(retry.retries(504) && !retry.retries(500));
        assert_eq!((retry.backoff_before_ms(2), retry.backoff_before_ms(3)), (10.0, 20.0));
        assert_eq!(r.breaker("cart").unwrap().failures, 5);
        assert_eq!(e.provenance.interventions.len(), 3);
        for (bad, says) in [
            ("- retry: { callee: cart, attempts: 0 }\n", "attempts"),
            ("- timeout: { callee: cart, ms: -1 }\n", "ms"),
            ("- timeout: { callee: nowhere, ms: 5 }\n", "unknown service"),
            ("- retry: { callee: cart, attempts: 2, on: [404] }\n", "failure statuses"),
            ("- circuit_breaker: { callee: cart, failures: 0, open_ms: 5 }\n", "failures"),
        ] {
            let err = apply(&m, &parse(bad).unwrap()).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn error_rate_sets_the_own_failure_probability() {
        let m = shop();
        let name = m.api_name(m.roots[0].api);
        let text = format!("- error_rate: {{ api: \"{name}\", probability: 0.25 }}\n");
        let e = apply(&m, &parse(&text).unwrap()).unwrap();
        let f = e.apis[m.roots[0].api as usize].failures.as_ref().unwrap();
        assert_eq!(f.own_rate(None), 0.25);
        let bad = format!("- error_rate: {{ api: \"{name}\", probability: 1.5 }}\n");
        assert!(apply(&m, &parse(&bad).unwrap()).unwrap_err().to_string().contains("between 0 and 1"));
    }
}
