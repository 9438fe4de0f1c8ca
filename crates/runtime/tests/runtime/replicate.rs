//! A replicated service on real sockets: callers spread their calls over
//! its instances (HTTP and gRPC), every instance's spans say which one it
//! is, and a stopped instance makes the calls sent to it fail visibly while
//! the others keep serving. Also what `system.json` accepts for instances.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use palette_runtime::SystemConfig;
use palette_runtime::config::RpcMode;
use palette_runtime::server::{ServeOptions, start};
use palette_runtime::synthetic::chain;
use palette_runtime::transport::{CallHeaders, HttpClient, Transport};

use super::serve::{SERIAL, tracing};

/// `n` consecutive ports free right now, for a service whose instance i
/// listens on port + i.
fn consecutive_free(n: u16) -> u16 {
    for _ in 0..200 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if p > u16::MAX - n {
            continue;
        }
        let rest: Vec<_> = (1..n).map(|i| std::net::TcpListener::bind(("127.0.0.1", p + i))).collect();
        if rest.iter().all(Result::is_ok) {
            return p;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Spans written in `path`: (service, instance id, kind, error) each.
fn spans(path: &Path) -> Vec<(String, Option<String>, i64, bool)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        for rs in doc["resourceSpans"].as_array().unwrap() {
            let attrs: BTreeMap<&str, &str> = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["key"].as_str().unwrap(), a["value"]["stringValue"].as_str().unwrap()))
                .collect();
            for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                out.push((
                    attrs["service.name"].to_string(),
                    attrs.get("service.instance.id").map(|s| s.to_string()),
                    s["kind"].as_i64().unwrap(),
                    s["status"]["code"].as_i64() == Some(2),
                ));
            }
        }
    }
    out
}

/// SERVER spans of `s02` per instance.
fn served_by_instance(path: &Path) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for (service, instance, kind, _) in spans(path) {
        if service == "s02" && kind == 2 {
            *by.entry(instance.expect("a replicated service's spans carry service.instance.id")).or_insert(0) += 1;
        }
    }
    by
}

async fn replicated_callee(rpc: RpcMode) {
    let _serial = SERIAL.lock().await;
    let caller_port = consecutive_free(4);
    let callee_port = caller_port + 1;
    let mut config = chain(&[caller_port, callee_port], &[0, 0]);
    config.rpc = rpc;
    config.tracing = tracing();
    config.services[1].instances = 3;
    // What `palette up` does: the caller and each instance in a process of its own.
    let config = SystemConfig::parse(&config.to_json(), "system.json".as_ref()).expect("a valid system");
    let dir = tempfile::tempdir().unwrap();
    let opts = |service: &str, instance: Option<u32>| ServeOptions {
        services: Some(vec![service.into()]),
        base_dir: dir.path().to_path_buf(),
        drain: Duration::from_secs(5),
        instance,
        ..ServeOptions::default()
    };
    let caller = start(config.clone(), &opts("s01", None)).await.unwrap();
    let mut instances = Vec::new();
    for k in 0..3 {
        let running = start(config.clone(), &opts("s02", Some(k))).await.unwrap();
        assert_eq!(running.listening()[0].1.port(), callee_port + k as u16, "instance {k} listens on port + {k}");
        instances.push(Some(running));
    }
    // Roots go over HTTP/1.1 whatever the system's transport (its ports answer both).
    let client = HttpClient::new(vec![format!("127.0.0.1:{caller_port}")], 1 << 20);
    let root = || async {
        client.call(0, "hop", CallHeaders::default(), bytes::Bytes::new()).await.expect("the caller answers").status
    };
    for _ in 0..60 {
        assert_eq!(root().await, 200);
    }
    // Flushed every 50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = dir.path().join("spans.jsonl");
    let before = served_by_instance(&path);
    assert_eq!(before.len(), 3, "every instance served calls: {before:?}");
    for (instance, n) in &before {
        assert!((15..=25).contains(n), "60 calls over 3 instances, {instance} served {n}: {before:?}");
    }

    // Instance 1 stops (crashed, or being restarted): the calls it would
    // get fail, visibly; the other two keep serving theirs.
    instances[1].take().unwrap().shutdown().await;
    let mut failed = 0;
    for _ in 0..30 {
        match root().await {
            200 => {}
            502 => failed += 1,
            other => panic!("a call to a stopped instance is a 502, not {other}"),
        }
    }
    assert!((5..=15).contains(&failed), "about a third of 30 calls fail: {failed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = served_by_instance(&path);
    assert_eq!(after["s02-1"], before["s02-1"], "the stopped instance served nothing more: {after:?}");
    for k in ["s02-0", "s02-2"] {
        assert!(after[k] >= before[k] + 5, "{k} kept serving: {before:?} → {after:?}");
    }
    let errors = spans(&path).into_iter().filter(|(s, _, kind, error)| s == "s01" && *kind == 3 && *error).count();
    assert_eq!(errors, failed, "each failed call has an error CLIENT span");
    caller.shutdown().await;
    for i in instances.into_iter().flatten() {
        i.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_are_spread_over_the_instances() {
    replicated_callee(RpcMode::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_spread_over_the_instances() {
    replicated_callee(RpcMode::Grpc).await;
}

/// A packed process serves every instance, each on its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_process_serves_every_instance() {
    let _serial = SERIAL.lock().await;
    let ports = consecutive_free(4);
    let mut config = chain(&[ports, ports + 1], &[0, 0]);
    config.services[1].instances = 3;
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions { base_dir: dir.path().to_path_buf(), ..ServeOptions::default() };
    let running = start(config.clone(), &opts).await.unwrap();
    let listening: Vec<u16> = running.listening().iter().map(|(_, a)| a.port()).collect();
    assert_eq!(listening, [ports, ports + 1, ports + 2, ports + 3]);
    let bad = ServeOptions { instance: Some(3), services: Some(vec!["s02".into()]), ..opts };
    let err = start(config, &bad).await.err().expect("there is no instance 3");
    assert!(err.is_usage() && err.to_string().contains("has 3 instance(s): there is no instance 3"), "{err}");
    running.shutdown().await;
}

#[test]
fn system_files_check_instances() {
    let mut config = chain(&[9000, 9010], &[0, 0]);
    // One instance is not written: files from before stay the same.
    assert!(!config.to_json().contains("instances"));
    config.services[1].instances = 3;
    let text = config.to_json();
    assert!(text.contains("\"instances\": 3"));
    assert_eq!(SystemConfig::parse(&text, "system.json".as_ref()).unwrap(), config);
    let err = |f: &dyn Fn(&mut SystemConfig)| {
        let mut c = config.clone();
        f(&mut c);
        SystemConfig::parse(&c.to_json(), "system.json".as_ref()).unwrap_err().to_string()
    };
    let e = err(&|c| c.services[1].instances = 0);
    assert!(e.contains("`s02` has 0 instances; it needs 1 to 64"), "{e}");
    let e = err(&|c| c.services[1].instances = 65);
    assert!(e.contains("has 65 instances"), "{e}");
    let e = err(&|c| c.services[0].port = 9012);
    assert!(e.contains("port 9012 of `s02` (instance 2) is also a port of `s01`"), "{e}");
    let e = err(&|c| c.services[1].port = 65534);
    assert!(e.contains("need ports 65534 to 65536, past 65535"), "{e}");
    // The error names the line of the entry.
    assert!(e.starts_with("system.json:"), "{e}");
}
