//! Finding an API by the name a user typed.

use std::path::Path;

use super::*;
use crate::Model;
use crate::model::ApiId;

/// The API `name` names in the model read from `path`: `service operation`,
/// `service/operation` or an operation only one service has. The error is
/// the message for the user (a usage error: exit 2), with close matches.
pub fn resolve_api(model: &Model, name: &str, path: &Path) -> Result<ApiId, String> {
    if let Some(id) = model.find_api(name) {
        return Ok(id);
    }
    let same_op: Vec<String> =
        model.apis.iter().filter(|a| a.operation == name).map(|a| format!("`{} {}`", a.service, a.operation)).collect();
    if same_op.len() > 1 {
        return Err(format!(
            "--api `{name}`: {} services have that operation; name one: {}",
            same_op.len(),
            list(&same_op, 10)
        ));
    }
    let close = close_matches(model, name);
    let hint = if close.is_empty() {
        format!("`palette show {}` lists its {} APIs", path.display(), model.apis.len())
    } else {
        format!("close matches: {}", list(&close.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>(), 10))
    };
    Err(format!(
        "--api `{name}`: no such API in {} (give `service operation`, `service/operation` or a unique operation); {hint}",
        path.display()
    ))
}

/// APIs whose name contains the query (or the other way round), or is a
/// few edits away from it; best first.
fn close_matches(model: &Model, name: &str) -> Vec<String> {
    let q = name.trim().to_lowercase();
    if q.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(usize, String)> = Vec::new();
    for (i, a) in model.apis.iter().enumerate() {
        let full = model.api_name(i as ApiId);
        let forms =
            [full.to_lowercase(), format!("{}/{}", a.service, a.operation).to_lowercase(), a.operation.to_lowercase()];
        let score = if forms.iter().any(|f| f.contains(&q) || (f.len() >= 3 && q.contains(f.as_str()))) {
            0
        } else {
            forms.iter().map(|f| edit_distance(f, &q)).min().unwrap_or(usize::MAX)
        };
        let allowed = (q.chars().count() / 3).max(1);
        if score <= allowed {
            scored.push((score, full));
        }
    }
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
