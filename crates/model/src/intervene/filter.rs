//! `filter`: which traces a fit reads. Meaningful only for `palette fit
//! --apply`; applying it to a finished model is an error.

use serde::{Deserialize, Serialize};

use crate::TraceFilter;

/// Trace selection, as `palette fit`'s filter flags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Skip traces with an error anywhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_errors: bool,
    /// Keep only traces that touch one of these services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_services: Vec<String>,
    /// Remove these services' executions and what they call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_services: Vec<String>,
    /// Keep only traces that touch one of these APIs (`service operation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_apis: Vec<String>,
    /// Remove these APIs' executions and what they call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_apis: Vec<String>,
    /// Keep traces starting this many seconds after the first one read, or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_s: Option<f64>,
    /// Keep traces starting before this many seconds after the first one read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_s: Option<f64>,
}

impl FilterSpec {
    /// Adds this selection to `f` (lists extend; flags and windows override).
    pub fn merge_into(&self, f: &mut TraceFilter) {
        f.drop_errors |= self.drop_errors;
        f.include_services.extend(self.include_services.iter().cloned());
        f.exclude_services.extend(self.exclude_services.iter().cloned());
        f.include_apis.extend(self.include_apis.iter().cloned());
        f.exclude_apis.extend(self.exclude_apis.iter().cloned());
        if let Some(s) = self.since_s {
            f.since_ns = Some((s * 1e9).round() as i64);
        }
        if let Some(s) = self.until_s {
            f.until_ns = Some((s * 1e9).round() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::intervene::{apply, fit_filters, parse};

    #[test]
    fn filters_feed_fit_and_are_refused_by_edit() {
        let entries = parse("- filter: { drop_errors: true, exclude_services: [adservice], since_s: 2 }\n").unwrap();
        let mut f = crate::TraceFilter::default();
        fit_filters(&entries, &mut f);
        assert!(f.drop_errors);
        assert_eq!(f.exclude_services, ["adservice"]);
        assert_eq!(f.since_ns, Some(2_000_000_000));
        let err = apply(&super::super::tests_support::shop(), &entries).unwrap_err();
        assert!(!err.is_bad_data());
        assert!(err.to_string().contains("entry 0 (filter): a filter selects traces"), "{err}");
    }
}
