//! The summary and one API as JSON.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::model::{ApiId, Caller};
use crate::{Model, Sketch};

fn quantiles_ms(s: &Sketch) -> Value {
    let r = |v: f64| (v / 1e3).round() / 1e3;
    json!({
        "n": s.n,
        "p50": r(s.quantile(0.5)),
        "p90": r(s.quantile(0.9)),
        "p99": r(s.quantile(0.99)),
        "mean": r(s.mean()),
    })
}

fn caller_json(model: &Model, c: Caller) -> Value {
    c.map_or(Value::Null, |id| Value::String(model.api_name(id)))
}

pub fn summary_json(model: &Model, path: &Path) -> Value {
    let c = counts(model);
    let roots: Vec<Value> = roots_by_count(model)
        .into_iter()
        .map(|r| {
            let a = &model.apis[r.api as usize];
            json!({
                "api": model.api_name(r.api),
                "service": a.service,
                "operation": a.operation,
                "count": r.count,
                "share": if c.root_total == 0 { 0.0 } else { r.count as f64 / c.root_total as f64 },
            })
        })
        .collect();
    let apis: Vec<Value> = by_count(model)
        .into_iter()
        .map(|i| {
            let a = &model.apis[i];
            let mut v = json!({
                "api": model.api_name(i as ApiId),
                "service": a.service,
                "operation": a.operation,
                "count": a.count,
                "callers": a.callers.len(),
                "latency_ms": quantiles_ms(&a.latency),
                "states": a.states.len(),
                "transitions": a.states.iter().map(|s| s.next.len()).sum::<usize>(),
            });
            if let Some(n) = &a.naive {
                v["callees"] = n
                    .calls
                    .iter()
                    .map(|call| {
                        let (mean, some) = naive_call_stats(&call.per_execution);
                        json!({"api": model.api_name(call.callee), "mean_calls": mean, "share_calling": some})
                    })
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "model": path.display().to_string(),
        "format": model.format,
        "kind": kind_name(model.kind),
        "provenance": model.provenance,
        "options": model.options,
        "services": model.services.len(),
        "apis": model.apis.len(),
        "edges": model.edges.len(),
        "local_edges": c.local_edges,
        "rpc_edges": c.rpc_edges,
        "roots": model.roots.len(),
        "states": c.states,
        "transitions": c.transitions,
        "root_apis": roots,
        "api_summaries": apis,
    })
}

pub fn api_json(model: &Model, id: ApiId) -> Value {
    let a = &model.apis[id as usize];
    let states: Vec<Value> = a
        .states
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let totals = caller_totals(s);
            let next: Vec<Value> = s
                .next
                .iter()
                .map(|t| {
                    json!({
                        "to": t.to,
                        "count": t.count,
                        "p": t.p,
                        "by_caller": t.by_caller.iter().map(|c| {
                            let total = totals.get(&c.caller).copied().unwrap_or(0);
                            json!({
                                "caller": caller_json(model, c.caller),
                                "count": c.count,
                                "visits": total,
                                "p": c.count as f64 / total.max(1) as f64,
                            })
                        }).collect::<Vec<_>>(),
                        "work_ms": quantiles_ms(&t.work.all),
                        "work_by_caller_ms": t.work.by_caller.iter().map(|c| json!({
                            "caller": caller_json(model, c.caller),
                            "work": quantiles_ms(&c.sketch),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "state": k,
                "calls": s.calls.iter().map(|&c| model.api_name(c)).collect::<Vec<_>>(),
                "visits": s.visits,
                "repeats": s.repeats,
                "lambda": s.lambda,
                "next": next,
            })
        })
        .collect();
    let overhead: Vec<Value> = a
        .overhead
        .iter()
        .map(|o| {
            json!({
                "callee": model.api_name(o.callee),
                "overhead_ms": quantiles_ms(&o.overhead.all),
                "by_caller_ms": o.overhead.by_caller.iter().map(|c| json!({
                    "caller": caller_json(model, c.caller),
                    "overhead": quantiles_ms(&c.sketch),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut v = json!({
        "api": model.api_name(id),
        "service": a.service,
        "operation": a.operation,
        "count": a.count,
        "callers": a.callers.iter().map(|c| json!({"caller": caller_json(model, c.caller), "count": c.count})).collect::<Vec<_>>(),
        "root_count": model.roots.iter().find(|r| r.api == id).map_or(0, |r| r.count),
        "latency_ms": quantiles_ms(&a.latency),
        "states": states,
        "overhead": overhead,
    });
    if let Some(n) = &a.naive {
        v["naive"] = json!({
            "work_ms": quantiles_ms(&n.work),
            "calls": n.calls.iter().map(|call| {
                let (mean, some) = naive_call_stats(&call.per_execution);
                json!({
                    "callee": model.api_name(call.callee),
                    "per_execution": call.per_execution,
                    "mean_calls": mean,
                    "share_calling": some,
                    "overhead_ms": quantiles_ms(&call.overhead),
                })
            }).collect::<Vec<_>>(),
        });
    }
    v
}
