//! Built-in ground-truth systems: the paper's Figure 1 and a web shop.

use crate::system::{Dist, Step, SystemSpec};

fn call(api: &str) -> Step {
    Step::Call(api.into())
}
fn work(median_ms: f64) -> Step {
    Step::Work(Dist::LogNormal { median: median_ms, sigma: 0.25 })
}
fn seq(steps: Vec<Step>) -> Step {
    Step::Seq(steps)
}
fn par(apis: &[&str]) -> Step {
    Step::Parallel(apis.iter().map(|a| a.to_string()).collect())
}

/// The paper's Figure 1: services A and C both call the shared service B,
/// and B does 10× more work when C calls it. A per-API model of B gets both
/// callers wrong; a caller-conditioned one gets both right.
pub fn figure1() -> SystemSpec {
    let mut s = SystemSpec::new("figure1");
    s.api("A/a", seq(vec![work(2.0), call("B/b"), work(1.0)]))
        .api("C/c", seq(vec![work(2.0), call("B/b"), work(1.0)]))
        .api(
            "B/b",
            Step::WorkByCaller {
                by: vec![
                    ("A/a".into(), Dist::LogNormal { median: 2.0, sigma: 0.2 }),
                    ("C/c".into(), Dist::LogNormal { median: 20.0, sigma: 0.2 }),
                ],
                default: Dist::LogNormal { median: 2.0, sigma: 0.2 },
            },
        )
        .root("A/a", 0.5)
        .root("C/c", 0.5);
    s
}

/// A 20-service web shop with concurrent fan-out, choices, caller-dependent
/// work, a loop, a caller-conditioned call and a fire-and-forget call.
pub fn webshop() -> SystemSpec {
    let mut s = SystemSpec::new("webshop");
    s.api(
        "frontend/GET /",
        seq(vec![
            work(1.0),
            call("session/Get"),
            par(&["ads/List", "recommendation/List", "catalog/List"]),
            call("currency/Convert"),
            work(0.5),
        ]),
    )
    .api(
        "frontend/GET /product",
        seq(vec![
            work(0.8),
            call("session/Get"),
            par(&["catalog/Get", "reviews/List", "inventory/Check"]),
            Step::Choice(vec![(0.7, call("recommendation/List")), (0.3, par(&["ads/List", "pricing/Quote"]))]),
            work(0.5),
        ]),
    )
    .api(
        "frontend/POST /cart",
        seq(vec![
            work(0.6),
            call("session/Get"),
            call("cart/Add"),
            // One currency conversion per cart line: 1 to 5 lines.
            Step::Repeat { min: 1, max: 5, body: Box::new(call("currency/Convert")) },
            work(0.3),
        ]),
    )
    .api("frontend/POST /checkout", seq(vec![work(1.0), call("session/Get"), call("checkout/PlaceOrder"), work(0.5)]))
    .api(
        "checkout/PlaceOrder",
        seq(vec![
            work(1.5),
            call("cart/Get"),
            par(&["inventory/Check", "shipping/Quote", "pricing/Quote"]),
            call("fraud/Score"),
            Step::Choice(vec![(0.8, call("payment/Card")), (0.2, call("payment/Wallet"))]),
            par(&["shipping/Ship", "cart/Empty"]),
            Step::FireAndForget("email/Confirm".into()),
            work(0.8),
        ]),
    )
    .api(
        "session/Get",
        seq(vec![
            work(0.3),
            call("redis/GET"),
            // An expired session token is re-verified.
            Step::Choice(vec![(0.9, Step::Seq(vec![])), (0.1, call("auth/Verify"))]),
        ]),
    )
    .api("auth/Verify", seq(vec![work(1.0), call("redis/GET")]))
    .api("cart/Add", seq(vec![work(0.5), call("redis/SET")]))
    .api("cart/Get", seq(vec![work(0.4), call("redis/GET")]))
    .api("cart/Empty", seq(vec![work(0.3), call("redis/SET")]))
    .api("catalog/List", seq(vec![work(1.2), call("mysql/SELECT")]))
    .api("catalog/Get", seq(vec![work(0.6), call("mysql/SELECT")]))
    .api(
        "inventory/Check",
        seq(vec![
            // Checkout asks for a reservation-grade check: 8× the work.
            Step::WorkByCaller {
                by: vec![("checkout/PlaceOrder".into(), Dist::LogNormal { median: 8.0, sigma: 0.3 })],
                default: Dist::LogNormal { median: 1.0, sigma: 0.3 },
            },
            // Only checkout locks stock.
            Step::IfCaller { caller: "checkout/PlaceOrder".into(), then: Box::new(call("mysql/UPDATE")) },
        ]),
    )
    .api("reviews/List", seq(vec![work(1.5), call("search/Query")]))
    .api("search/Query", work(2.5))
    .api("recommendation/List", seq(vec![work(2.0), call("catalog/Get")]))
    .api("ads/List", work(1.5))
    .api("currency/Convert", work(0.2))
    .api("pricing/Quote", seq(vec![work(0.7), call("currency/Convert")]))
    .api("shipping/Quote", work(1.0))
    .api("shipping/Ship", seq(vec![work(2.0), call("mysql/INSERT")]))
    .api("fraud/Score", Step::Work(Dist::LogNormal { median: 4.0, sigma: 0.6 }))
    .api("payment/Card", Step::Work(Dist::LogNormal { median: 15.0, sigma: 0.4 }))
    .api("payment/Wallet", Step::Work(Dist::LogNormal { median: 30.0, sigma: 0.5 }))
    .api("email/Confirm", seq(vec![work(3.0), call("notification/Send")]))
    .api("notification/Send", work(1.0))
    .api("redis/GET", Step::Work(Dist::LogNormal { median: 0.15, sigma: 0.3 }))
    .api("redis/SET", Step::Work(Dist::LogNormal { median: 0.2, sigma: 0.3 }))
    .api("mysql/SELECT", Step::Work(Dist::LogNormal { median: 1.5, sigma: 0.5 }))
    .api("mysql/UPDATE", Step::Work(Dist::LogNormal { median: 3.0, sigma: 0.5 }))
    .api("mysql/INSERT", Step::Work(Dist::LogNormal { median: 2.5, sigma: 0.5 }))
    .root("frontend/GET /", 0.45)
    .root("frontend/GET /product", 0.35)
    .root("frontend/POST /cart", 0.12)
    .root("frontend/POST /checkout", 0.08);
    s
}

/// Built-in systems by name.
pub fn by_name(name: &str) -> Option<SystemSpec> {
    match name {
        "figure1" => Some(figure1()),
        "webshop" => Some(webshop()),
        _ => None,
    }
}

pub const NAMES: [&str; 2] = ["figure1", "webshop"];
