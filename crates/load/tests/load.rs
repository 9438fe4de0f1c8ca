//! The load generator against real servers on loopback: a test service with
//! a fixed 10 ms service time, one request at a time (capacity 100 req/s),
//! and a zero-latency service that records what it receives.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use palette_load::{
    Arrivals, LoadError, LoadOptions, LoadReport, NoObserver, Profile, ProfileSpec, Replay, Schedule, Target, run_load,
};
use palette_model::Model;
use palette_runtime::SystemConfig;
use serde_json::json;
use tokio::net::TcpListener;

/// A model whose root APIs are `(service, operation, traced count)`; every
/// API makes no calls. `request_bytes`, when given, is the sketch of the
/// first API's request sizes.
fn model(roots: &[(&str, &str, u64)], request_bytes: Option<serde_json::Value>) -> Model {
    let mut services: Vec<&str> = roots.iter().map(|r| r.0).collect();
    services.sort();
    services.dedup();
    let mut apis: Vec<(&str, &str, u64)> = roots.to_vec();
    apis.sort();
    let api_json: Vec<serde_json::Value> = apis
        .iter()
        .enumerate()
        .map(|(i, (s, o, n))| {
            let mut a = json!({
                "service": s, "operation": o, "count": n, "callers": [{"caller": null, "count": n}],
                "latency": {"n": 1, "min": 1000.0, "max": 1000.0, "bins": [[0, 1]]}
            });
            if i == 0
                && let Some(rb) = &request_bytes
            {
                a["request_bytes"] = rb.clone();
            }
            a
        })
        .collect();
    let root_json: Vec<serde_json::Value> = roots
        .iter()
        .map(|r| json!({"api": apis.iter().position(|a| a.0 == r.0 && a.1 == r.1).unwrap(), "count": r.2}))
        .collect();
    serde_json::from_value(json!({
        "format": "palette-model/1", "kind": "palette",
        "options": {"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20},
        "provenance": {"inputs": [], "traces": 1, "spans": 1},
        "services": services, "apis": api_json, "roots": root_json, "edges": []
    }))
    .expect("a valid model")
}

/// A system serving `model`, each service at the given port; checked the
/// way `system.json` is.
fn system(model: Model, ports: &[(&str, u16)]) -> SystemConfig {
    let services: Vec<serde_json::Value> = ports
        .iter()
        .map(|(name, port)| {
            let apis: Vec<usize> =
                model.apis.iter().enumerate().filter(|(_, a)| a.service == *name).map(|(i, _)| i).collect();
            json!({"name": name, "host": name, "port": port, "apis": apis})
        })
        .collect();
    let text = serde_json::to_string_pretty(&json!({
        "format": "palette-system/1", "name": "test", "seed": 1, "services": services, "model": model
    }))
    .unwrap();
    SystemConfig::parse(&text, Path::new("system.json")).expect("a valid system")
}

/// What a test server saw.
#[derive(Default)]
struct Seen {
    /// Requests per path.
    paths: BTreeMap<String, u64>,
    traceparents: Vec<String>,
    body_sizes: Vec<usize>,
    hosts: Vec<String>,
}

/// Serves `POST /op/...` on a free loopback port (and `/healthz`; `GET
/// /stats/lateness` is 404, as on a server that is no Palette service). With `service` set, the
/// server is a single worker: each request is done `service` after the later
/// of its arrival and the previous request's completion (computed exactly, so
/// timer granularity cannot change the capacity). Returns the port.
async fn serve(service: Option<Duration>, seen: Arc<Mutex<Seen>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let free_at = Arc::new(Mutex::new(Instant::now()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            stream.set_nodelay(true).unwrap();
            let (free_at, seen) = (free_at.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (free_at, seen) = (free_at.clone(), seen.clone());
                    async move {
                        if req.uri().path() == "/healthz" {
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))));
                        }
                        // Not a Palette service: no lateness counters.
                        if req.uri().path() == "/stats/lateness" {
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found")));
                            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                            return Ok(resp);
                        }
                        let path = req.uri().path().to_string();
                        let tp = req.headers().get("traceparent").map(|v| v.to_str().unwrap().to_string());
                        let host = req.headers().get("host").map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        {
                            let mut s = seen.lock().unwrap();
                            *s.paths.entry(path).or_default() += 1;
                            s.traceparents.extend(tp);
                            s.hosts.extend(host);
                            s.body_sizes.push(body);
                        }
                        if let Some(service) = service {
                            let done = {
                                let mut f = free_at.lock().unwrap();
                                *f = (*f).max(Instant::now()) + service;
                                *f
                            };
                            tokio::time::sleep_until(done.into()).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"done")));
                        resp.headers_mut().insert("palette-server-ns", "1".parse().unwrap());
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    port
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs `opts` against one 10 ms single-worker service.
fn against_10ms_server(opts: LoadOptions) -> LoadReport {
    let rt = runtime();
    rt.block_on(async {
        let port = serve(Some(Duration::from_millis(10)), Arc::default()).await;
        let sys = system(model(&[("svc", "work", 1)], None), &[("svc", port)]);
        run_load(&opts, &sys, Path::new("system.json"), &NoObserver).await.expect("the run completes")
    })
}

fn poisson(rate: f64, warmup_ms: u64, duration_ms: u64, connections: usize) -> LoadOptions {
    LoadOptions {
        arrivals: Arrivals::Poisson { rate },
        warmup: Duration::from_millis(warmup_ms),
        duration: Duration::from_millis(duration_ms),
        connections,
        seed: 1,
        ..LoadOptions::default()
    }
}

/// Mean latency (ms) of the timeline intervals in `range` (by index).
fn mean_p50(r: &LoadReport, range: std::ops::Range<usize>) -> f64 {
    let xs: Vec<f64> = r.timeline[range].iter().filter_map(|i| i.latency.map(|l| l.p50_ms)).collect();
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn at_90_percent_of_capacity_the_system_keeps_up() {
    // 10 s: the system's own queue length wanders (M/D/1 at ρ = 0.9), and
    // over 10 s that moves the achieved rate by about 0.6% (one σ), so 2%
    // is well outside chance.
    let r = against_10ms_server(poisson(90.0, 2000, 10_000, 256));
    eprintln!("{}", r.to_text());
    let t = &r.total;
    assert_eq!(t.errors, 0, "{:?}", t.errors_by_kind);
    assert_eq!(t.requests, 900, "exactly rate × duration arrivals");
    assert!((t.offered_rate - 90.0).abs() < 1e-9);
    assert!((t.achieved_rate / 90.0 - 1.0).abs() < 0.02, "achieved {} of 90/s", t.achieved_rate);
    let l = t.latency.unwrap();
    // Never faster than the service time; queueing at ρ = 0.9 adds about
    // 45 ms on average (M/D/1), so far less than overload would.
    assert!(l.p50_ms >= 10.0 && l.mean_ms < 150.0, "{l:?}");
    assert!(l.p99_ms < 1000.0, "{l:?}");
    // Steady: the last third of the window is not systematically slower.
    let n = r.timeline.len();
    assert!(mean_p50(&r, 2 * n / 3..n) < 200.0, "{:?}", r.timeline);
}

#[test]
fn a_profile_run_reports_target_offered_sent_and_achieved_per_window() {
    let rt = runtime();
    let report = rt.block_on(async {
        let port = serve(None, Arc::default()).await;
        let m = model(&[("svc", "work", 1)], None);
        let sys = system(m.clone(), &[("svc", port)]);
        let spec = ProfileSpec::parse("step:rates=40,120,every=1s").unwrap();
        let (profile, _) = Profile::new(&spec, 4.0, &m, None).unwrap();
        let opts = LoadOptions {
            arrivals: Arrivals::Profile { profile: Arc::new(profile) },
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(4),
            window: Some(Duration::from_secs(1)),
            ..LoadOptions::default()
        };
        run_load(&opts, &sys, Path::new("system.json"), &NoObserver).await.expect("the run completes")
    });
    eprintln!("{}", report.to_text());
    assert_eq!(report.arrivals, "profile");
    assert_eq!(report.profile.as_deref(), Some("step:rates=40,120,every=1s"));
    assert_eq!(report.total.requests, 320);
    assert!((report.requested_rate - 80.0).abs() < 1e-9);
    assert_eq!(report.timeline_step_s, 1.0);
    let targets: Vec<Option<f64>> = report.timeline.iter().map(|i| i.target_rate).collect();
    assert_eq!(targets, [Some(40.0), Some(120.0), Some(40.0), Some(120.0)]);
    for i in &report.timeline {
        // Exactly the curve's count, scheduled; sent on time by an idle generator.
        assert_eq!(i.offered_rate, i.target_rate.unwrap(), "{i:?}");
        assert!((i.sent_rate / i.offered_rate - 1.0).abs() < 0.1, "{i:?}");
        assert!(i.latency.is_some() && i.length_s == 1.0, "{i:?}");
    }
    let worst = report.rate_deviation.expect("a profile run has a worst window");
    assert!(worst.relative.abs() < 0.25, "{worst:?}");
    let text = report.to_text();
    assert!(text.contains("target/s") && text.contains("worst deviation of achieved from target"), "{text}");
    assert!(text.contains("profile step:rates=40,120,every=1s (a mean 80.0/s)"), "{text}");
}

#[test]
fn at_120_percent_of_capacity_queueing_grows_and_is_reported() {
    let r = against_10ms_server(poisson(120.0, 500, 3000, 256));
    eprintln!("{}", r.to_text());
    let t = &r.total;
    assert_eq!(t.errors, 0, "{:?}", t.errors_by_kind);
    assert_eq!(t.requests, 360);
    // The server does exactly 100/s once it is never idle.
    assert!((t.achieved_rate - 100.0).abs() < 3.0, "achieved {}", t.achieved_rate);
    let l = t.latency.unwrap();
    // The backlog grows by 20 requests a second (200 ms of waiting per second).
    assert!(l.p99_ms > 400.0, "{l:?}");
    let n = r.timeline.len();
    let (first, last) = (mean_p50(&r, 0..n / 3), mean_p50(&r, 2 * n / 3..n));
    assert!(last > first + 200.0, "latency must grow: first third {first} ms, last third {last} ms");
}

#[test]
fn busy_connections_do_not_hide_queueing() {
    // Only 4 requests in flight: the server never holds more than 4, so
    // each response takes at most 40 ms once sent. The queue moves into the
    // generator instead, and is still measured from the scheduled times.
    let r = against_10ms_server(poisson(120.0, 500, 3000, 4));
    eprintln!("{}", r.to_text());
    let t = &r.total;
    assert_eq!(t.errors, 0, "{:?}", t.errors_by_kind);
    assert!((t.achieved_rate - 100.0).abs() < 3.0, "achieved {}", t.achieved_rate);
    let l = t.latency.unwrap();
    assert!(l.p99_ms > 400.0, "latency from the scheduled time must include the wait: {l:?}");
    let lag = r.send_lag.unwrap();
    assert!(lag.p99_ms > 300.0, "the wait shows as send lag: {lag:?}");
    let n = r.timeline.len();
    assert!(mean_p50(&r, 2 * n / 3..n) > mean_p50(&r, 0..n / 3) + 200.0, "{:?}", r.timeline);
}

#[test]
fn requests_follow_the_root_mix_with_fresh_trace_context() {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (report, web_port) = rt.block_on(async {
        let web = serve(None, seen.clone()).await;
        let api = serve(None, seen.clone()).await;
        // Request sizes: 100 bytes in the traces (a sketch of one value).
        let sizes = json!({"n": 10, "min": 100.0, "max": 100.0, "bins": [[1, 10]]});
        let m = model(&[("web", "GET /home", 6), ("web", "POST /cart", 3), ("api", "list", 1)], Some(sizes));
        let sys = system(m, &[("web", web), ("api", api)]);
        let mut opts = poisson(500.0, 200, 2000, 64);
        opts.target = Target::Host("localhost".into());
        (run_load(&opts, &sys, Path::new("system.json"), &NoObserver).await.unwrap(), web)
    });
    let seen = seen.lock().unwrap();
    let t = &report.total;
    assert_eq!(t.errors, 0);
    assert_eq!(t.requests, 1000);
    // Every arrival (warm-up included: 100 of them) reached its service.
    assert_eq!(seen.paths.values().sum::<u64>(), 1100);
    let share = |path: &str| seen.paths.get(path).copied().unwrap_or(0) as f64 / 1100.0;
    assert!((share("/op/GET%20%2Fhome") - 0.6).abs() < 0.05, "{:?}", seen.paths);
    assert!((share("/op/POST%20%2Fcart") - 0.3).abs() < 0.05, "{:?}", seen.paths);
    assert!((share("/op/list") - 0.1).abs() < 0.03, "{:?}", seen.paths);
    // Each row of the report counts its own API's requests.
    let rows: BTreeMap<&str, u64> = report.apis.iter().map(|a| (a.api.as_str(), a.requests)).collect();
    assert_eq!(rows.values().sum::<u64>(), 1000);
    assert!(rows["web GET /home"] > rows["web POST /cart"] && rows["web POST /cart"] > rows["api list"]);
    // A fresh W3C traceparent on every request: sampled in the measured
    // window, unsampled in the warm-up, so services record measured traffic only.
    assert_eq!(seen.traceparents.len(), 1100);
    let mut ids = std::collections::HashSet::new();
    let mut sampled = 0;
    for tp in &seen.traceparents {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert!(parts[0] == "00" && (parts[3] == "01" || parts[3] == "00"), "{tp}");
        sampled += usize::from(parts[3] == "01");
        assert!(parts[1].len() == 32 && parts[2].len() == 16, "{tp}");
        assert!(parts[1] != "0".repeat(32) && parts[2] != "0".repeat(16), "{tp}");
        assert!(ids.insert(parts[1].to_string()), "trace id {} repeats", parts[1]);
    }
    assert_eq!(sampled, 1000, "the 1000 measured requests are sampled, the 100 warm-up ones not");
    assert!(seen.hosts.iter().any(|h| *h == format!("localhost:{web_port}")), "{:?}", &seen.hosts[..3]);
    // Only the first API (`api list`, sorted first) has request sizes: 100 bytes.
    let hundred = seen.body_sizes.iter().filter(|&&b| b == 100).count();
    assert!((hundred as f64 / 1100.0 - 0.1).abs() < 0.03, "{hundred}");
    assert!(seen.body_sizes.iter().all(|&b| b == 0 || b == 100));
}

#[test]
fn poisson_arrivals_have_exponential_gaps_and_the_traced_mix() {
    let m = model(&[("a", "x", 3), ("b", "y", 1)], None);
    let rate = Arrivals::Poisson { rate: 1000.0 };
    let arrivals: Vec<_> = Schedule::new(&rate, &m, 1_000_000_000, 20_000_000_000, 42).collect();
    assert_eq!(arrivals.len(), 21_000);
    assert_eq!(arrivals.iter().filter(|a| !a.measured).count(), 1000);
    assert!(arrivals.iter().all(|a| a.measured == (a.at_ns >= 1_000_000_000)));
    let gaps: Vec<f64> = arrivals.windows(2).map(|w| (w[1].at_ns - w[0].at_ns) as f64).collect();
    assert!(gaps.iter().all(|&g| g >= 0.0));
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    assert!((mean / 1e6 - 1.0).abs() < 0.01, "mean gap {mean} ns");
    assert!((sd / mean - 1.0).abs() < 0.03, "CV {}", sd / mean);
    // Exponential: about e^-1 of the gaps are longer than the mean.
    let longer = gaps.iter().filter(|&&g| g > mean).count() as f64 / gaps.len() as f64;
    assert!((longer - (-1f64).exp()).abs() < 0.02, "{longer}");
    let share_a = arrivals.iter().filter(|a| a.api == 0).count() as f64 / arrivals.len() as f64;
    assert!((share_a - 0.75).abs() < 0.015, "{share_a}");
    // Same seed, same arrivals; another seed, others.
    let again: Vec<_> = Schedule::new(&rate, &m, 1_000_000_000, 20_000_000_000, 42).collect();
    assert_eq!(arrivals, again);
    let other: Vec<_> = Schedule::new(&rate, &m, 1_000_000_000, 20_000_000_000, 43).take(10).collect();
    assert_ne!(arrivals[..10], other[..]);
}

#[test]
fn replay_keeps_traced_gaps_scaled_by_speed_and_loops() {
    let m = model(&[("web", "GET /", 2), ("web", "POST /", 1)], None);
    // Gaps of 10, 20 and 30 ms; the mean (20 ms) closes the loop.
    let starts = vec![(1_030_000_000, 0), (1_000_000_000, 1), (1_010_000_000, 0), (1_060_000_000, 1)];
    let replay = Arc::new(Replay::from_roots(starts).unwrap());
    assert!((replay.rate() - 50.0).abs() < 1e-9);
    let arrivals = Arrivals::Replay { replay, speed: 2.0 };
    assert!((arrivals.rate() - 100.0).abs() < 1e-9);
    let got: Vec<(u64, u32)> =
        Schedule::new(&arrivals, &m, 0, 100_000_000, 1).map(|a| (a.at_ns / 1_000_000, a.api)).collect();
    // Halved: 5, 10 and 15 ms, then 10 ms back to the first trace.
    assert_eq!(got, [(0, 1), (5, 0), (15, 0), (30, 1), (40, 1), (45, 0), (55, 0), (70, 1), (80, 1), (85, 0), (95, 0)]);
}

#[test]
fn replay_reads_root_spans_from_trace_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.csv");
    let mut csv =
        String::from("TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n");
    // Three traces at web's root, 100 ms apart, each making two calls; one
    // more rooted at an API the system does not have as a root.
    for (i, (svc, op)) in [("web", "GET /"), ("web", "GET /"), ("db", "query"), ("web", "GET /")].iter().enumerate() {
        let start = 1_700_000_000_000_000_000u64 + i as u64 * 100_000_000;
        csv += &format!("a{i},b{i},,{svc},{op},{start},{},5000000\n", start + 5_000_000);
        csv += &format!("a{i},c{i},b{i},cache,get,{},{},1000000\n", start + 1_000_000, start + 2_000_000);
        csv += &format!("a{i},d{i},b{i},cache,get,{},{},1000000\n", start + 3_000_000, start + 4_000_000);
    }
    std::fs::write(&path, csv).unwrap();
    let m = model(&[("web", "GET /", 3)], None);
    let replay =
        Replay::read(std::slice::from_ref(&path), &Default::default(), &palette_trace::NoProgress, &m).unwrap();
    assert_eq!((replay.traces(), replay.unmatched), (3, 1));
    // Two gaps (100 and 200 ms) in 300 ms; the mean, 150 ms, closes the loop.
    assert!((replay.rate() - 20.0 / 3.0).abs() < 1e-6, "{}", replay.rate());
    let got: Vec<u64> =
        Schedule::new(&Arrivals::Replay { replay: Arc::new(replay), speed: 0.5 }, &m, 0, 2_000_000_000, 1)
            .map(|a| a.at_ns / 1_000_000)
            .collect();
    assert_eq!(got, [0, 200, 600, 900, 1100, 1500, 1800]);
    // Nothing to replay: a clear error, bad data.
    let none = model(&[("other", "op", 1)], None);
    let err = Replay::read(&[path], &Default::default(), &palette_trace::NoProgress, &none).unwrap_err();
    assert!(err.is_bad_data() && err.to_string().contains("root API"), "{err}");
    let one = Replay::from_roots(vec![(5, 0)]).unwrap_err();
    assert!(one.is_bad_data() && one.to_string().contains("at least 2"), "{one}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Unknown system file: usage (exit 2).
    let err = palette_load::load_system(&dir.path().join("nope.json")).unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("nope.json"), "{err}");
    // A directory means its system.json.
    let err = palette_load::load_system(dir.path()).unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("system.json"), "{err}");
    // Not a system: bad data (exit 65), naming the file.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"format\": 1}").unwrap();
    let err = palette_load::load_system(&bad).unwrap_err();
    assert!(err.is_bad_data() && err.to_string().contains("bad.json"), "{err}");
    // Rates, speeds, durations, connections.
    for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let err = poisson(rate, 0, 1000, 1).validate().unwrap_err();
        assert!(err.is_usage() && err.to_string().contains("--rate"), "{err}");
    }
    let replay = Arc::new(Replay::from_roots(vec![(0, 0), (10, 0)]).unwrap());
    let err = LoadOptions { arrivals: Arrivals::Replay { replay, speed: 0.0 }, ..LoadOptions::default() }
        .validate()
        .unwrap_err();
    assert!(err.is_usage() && err.to_string().contains("--speed"), "{err}");
    assert!(poisson(1.0, 0, 0, 1).validate().unwrap_err().to_string().contains("--duration"));
    assert!(poisson(1.0, 0, 1000, 0).validate().unwrap_err().to_string().contains("--connections"));
    // No root API: bad data.
    let rt = runtime();
    let mut m = model(&[("svc", "work", 1)], None);
    m.roots.clear();
    let sys = system(m, &[("svc", 1)]);
    let err = rt.block_on(run_load(&poisson(1.0, 0, 1000, 1), &sys, Path::new("sys.json"), &NoObserver)).unwrap_err();
    assert!(err.is_bad_data() && err.to_string().contains("no root API"), "{err}");
    // Nothing listening: one clear error before any load is sent.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sys = system(model(&[("svc", "work", 1)], None), &[("svc", port)]);
    let err = rt.block_on(run_load(&poisson(1.0, 0, 1000, 1), &sys, Path::new("sys.json"), &NoObserver)).unwrap_err();
    assert!(matches!(err, LoadError::Unreachable { .. }), "{err}");
    assert!(!err.is_usage() && !err.is_bad_data());
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")) && err.to_string().contains("svc"), "{err}");
}

#[test]
fn a_dead_system_gives_counted_errors_not_a_hang() {
    // The health check is skipped, so every request fails to connect: each
    // is counted, none silently dropped, and the run ends on time.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sys = system(model(&[("svc", "work", 1)], None), &[("svc", port)]);
    let mut opts = poisson(200.0, 0, 1000, 8);
    opts.health_check = false;
    let started = Instant::now();
    let r = runtime().block_on(run_load(&opts, &sys, Path::new("sys.json"), &NoObserver)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.total.requests, 200);
    assert_eq!(r.total.errors, 200);
    assert_eq!(r.total.errors_by_kind.get("connect"), Some(&200), "{:?}", r.total.errors_by_kind);
    assert_eq!(r.total.achieved_rate, 0.0);
    assert!(r.total.latency.is_none());
    assert!(r.to_text().contains("connect 200"), "{}", r.to_text());
}

#[test]
fn the_report_renders_as_a_table_and_json() {
    let r = against_10ms_server(poisson(20.0, 0, 500, 8));
    let text = r.to_text();
    assert!(text.starts_with("root api"), "{text}");
    assert!(text.contains("svc work") && text.lines().any(|l| l.starts_with("total")), "{text}");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["total"]["requests"], 10);
    assert_eq!(v["apis"][0]["api"], "svc work");
    assert!(v["total"]["latency"]["p99_ms"].as_f64().unwrap() >= 10.0, "{v}");
    assert_eq!(v["arrivals"], "poisson");
    assert!(v["timeline"].as_array().unwrap().len() == 5);
}

#[test]
fn a_stop_request_ends_the_run_early_with_what_was_measured() {
    struct StopAfter(Instant);
    impl palette_load::LoadObserver for StopAfter {
        fn stop_requested(&self) -> bool {
            self.0.elapsed() > Duration::from_millis(600)
        }
    }
    let rt = runtime();
    let started = Instant::now();
    let r = rt.block_on(async {
        let port = serve(Some(Duration::from_millis(1)), Arc::default()).await;
        let sys = system(model(&[("svc", "work", 1)], None), &[("svc", port)]);
        run_load(&poisson(100.0, 0, 10_000, 64), &sys, Path::new("system.json"), &StopAfter(Instant::now())).await
    });
    let r = r.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(r.stopped_early);
    assert!(r.total.requests > 20 && r.total.requests < 200, "{}", r.total.requests);
    assert_eq!(r.total.errors, 0, "arrivals not yet due are not errors: {:?}", r.total.errors_by_kind);
    assert!(r.to_text().contains("stopped early"));
}

fn unix_ns_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn the_report_places_the_measured_window_on_the_wall_clock() {
    let before = unix_ns_now();
    let r = against_10ms_server(poisson(50.0, 300, 1000, 8));
    let after = unix_ns_now();
    let (from, until) = (r.measured_from_unix_ns, r.measured_until_unix_ns);
    // After the warm-up, exactly the window long, and within the run.
    assert!(from >= before + 300_000_000, "window from {from}, run started {before}");
    assert_eq!(until - from, 1_000_000_000);
    assert!(until <= after, "window until {until}, run ended {after}");
    assert!(r.in_flight_at_end <= 8);
    assert_eq!(r.run_id.len(), 16);
    assert!(u64::from_str_radix(&r.run_id, 16).is_ok(), "{}", r.run_id);
    // The contention figures of the window (not judged: this machine may be busy).
    let c = &r.contention;
    assert!(c.cpus >= 1);
    assert!(c.probe.is_some_and(|p| p.count > 0 && p.p50_us <= p.p99_us && p.p99_us <= p.max_us), "{c:?}");
    if cfg!(target_os = "linux") {
        assert!(c.host_busy_fraction.is_some_and(|b| (0.0..=1.0).contains(&b)), "{c:?}");
        assert!(c.runnable_per_cpu.is_some(), "{c:?}");
    }
    // The test server is no Palette service: no lateness counters to read.
    assert!(c.services.is_none(), "{c:?}");
    assert_eq!(c.busy_reason, c.host_busy());
    assert!(r.to_text().lines().any(|l| l.starts_with("host: ")), "{}", r.to_text());
    let v = serde_json::to_value(&r).unwrap();
    assert!(v["contention"]["probe"]["p99_us"].is_number(), "{v}");
    assert_eq!(v["measured_from_unix_ns"], from);
}

#[test]
fn runs_with_one_seed_send_one_workload_under_their_own_trace_ids() {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = rt.block_on(serve(None, seen.clone()));
    let m = model(&[("web", "GET /home", 6), ("web", "POST /cart", 3)], None);
    let sys = system(m, &[("web", port)]);
    // Each run: what the server saw, the report.
    let run = |run_id: Option<u64>| {
        *seen.lock().unwrap() = Seen::default();
        let mut opts = poisson(400.0, 100, 500, 64);
        opts.run_id = run_id;
        let r = rt.block_on(run_load(&opts, &sys, Path::new("system.json"), &NoObserver)).unwrap();
        let s = std::mem::take(&mut *seen.lock().unwrap());
        let ids: std::collections::HashSet<String> =
            s.traceparents.iter().map(|tp| tp.split('-').nth(1).unwrap().to_string()).collect();
        assert_eq!(ids.len(), s.traceparents.len(), "a trace id repeats within a run");
        (r, s.paths, ids)
    };
    let (a, a_paths, a_ids) = run(None);
    let (b, b_paths, b_ids) = run(None);
    // The same arrivals: the same root APIs, at the same scheduled times.
    assert_eq!(a_paths, b_paths);
    let rows = |r: &LoadReport| r.apis.iter().map(|x| (x.api.clone(), x.requests)).collect::<Vec<_>>();
    assert_eq!(rows(&a), rows(&b));
    let per_interval = |r: &LoadReport| r.timeline.iter().map(|i| i.requests).collect::<Vec<_>>();
    assert_eq!(per_interval(&a), per_interval(&b));
    // Under trace ids of their own.
    assert_ne!(a.run_id, b.run_id);
    assert_eq!(a_ids.len(), 240);
    assert!(a_ids.is_disjoint(&b_ids), "{} trace ids shared", a_ids.intersection(&b_ids).count());
    // A run id given: its trace ids again, and none of the others.
    let (c, _, c_ids) = run(Some(7));
    let (_, _, d_ids) = run(Some(7));
    assert_eq!(c.run_id, "0000000000000007");
    assert_eq!(c_ids, d_ids);
    assert!(c_ids.is_disjoint(&a_ids) && c_ids.is_disjoint(&b_ids));
}

#[test]
fn the_services_lateness_is_read_from_a_real_runtime() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (report, ports) = rt.block_on(async {
        let ports: Vec<u16> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect::<Vec<_>>()
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let mut sys = palette_runtime::synthetic::chain(&ports, &[1_000_000, 1_000_000]);
        sys.tracing.file = None;
        let opts = palette_runtime::server::ServeOptions {
            base_dir: dir.path().to_path_buf(),
            ..palette_runtime::server::ServeOptions::default()
        };
        let running = palette_runtime::server::start(sys.clone(), &opts).await.unwrap();
        let report = run_load(&poisson(100.0, 200, 1000, 16), &sys, Path::new("system.json"), &NoObserver).await;
        running.shutdown().await;
        (report.unwrap(), ports)
    });
    assert_eq!(report.total.errors, 0, "{:?}", report.total.errors_by_kind);
    let s = report.contention.services.as_ref().expect("the runtime answers /stats/lateness");
    // Both services are one process: counted once.
    assert_eq!(s.processes, 1, "{s:?} of ports {ports:?}");
    assert!(s.unanswered.is_empty(), "{s:?}");
    // Each of the window's 100 requests slept in both services (give or
    // take the requests at the window's edges, and the time the reads take).
    let sleep = s.sleep.expect("sleep work");
    assert!(sleep.count >= 100 && sleep.count <= 300, "{sleep:?}");
    assert!(sleep.p50_us <= sleep.p99_us && sleep.p99_us <= sleep.max_us, "{sleep:?}");
    assert!(s.cpu.is_none() && s.memory.is_none(), "{s:?}");
    assert!(report.to_text().contains("services' work late sleep p99"), "{}", report.to_text());
}
