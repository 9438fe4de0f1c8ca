//! `GET /stats/lateness`: every port of a serving process answers how late
//! its local work has ended, as JSON, over HTTP and on gRPC systems' ports.

use palette_runtime::config::RpcMode;
use palette_runtime::lateness::{LATENESS_FORMAT, LatenessReport};
use palette_runtime::synthetic::{CHAIN_OPERATION, chain};

use super::serve::{MS, SERIAL, free_ports, raw, serve};

fn lateness(port: u16) -> LatenessReport {
    let (code, body) = raw(port, "GET /stats/lateness HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not a lateness report ({e}): {body}"))
}

async fn lateness_of(port: u16) -> LatenessReport {
    tokio::task::spawn_blocking(move || lateness(port)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lateness_counts_grow_with_sleep_work_on_every_port() {
    let _serial = SERIAL.lock().await;
    for rpc in [RpcMode::Http, RpcMode::Grpc] {
        let ports = free_ports(2);
        let mut config = chain(&ports, &[MS, 2 * MS]);
        config.rpc = rpc;
        config.tracing.file = None;
        let served = serve(config, None).await;
        let before = lateness_of(ports[0]).await;
        assert_eq!(before.format, LATENESS_FORMAT);
        assert_eq!(before.process.len(), 16, "{before:?}");
        // Both services are this one process: one set of counters.
        assert_eq!(lateness_of(ports[1]).await.process, before.process);
        for _ in 0..3 {
            let r = served.root(0, CHAIN_OPERATION).await;
            assert_eq!(r.status, 200, "{rpc:?}: {}", String::from_utf8_lossy(&r.body));
        }
        let after = lateness_of(ports[1]).await;
        assert_eq!(after.process, before.process);
        // Each request sleeps in both services (1 and 2 ms of work).
        assert!(after.sleep.count >= before.sleep.count + 6, "{rpc:?}: {before:?} then {after:?}");
        let s = &after.sleep;
        assert!(s.p50_us <= s.p99_us && s.p99_us <= s.max_us && s.mean_us <= s.max_us, "{s:?}");
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), s.count);
        assert_eq!((after.cpu.count, after.memory.count), (0, 0));
        let window = after.since(&before).expect("one process");
        assert!(window.sleep.count >= 6, "{window:?}");
        served.finish().await;
    }
}
