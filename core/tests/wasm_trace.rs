//! core running in a real browser (headless Chromium via wasm-bindgen-test): the demo traces the
//! same as natively, and the cost of one trace to the last of many Services is printed for the
//! "WASM within 2x of native" comparison (`proxyscope bench` prints the native number).
//!
//! The timing is a benchmark (`#[ignore]`d in the debug CI run): `scripts/wasm-bench.sh` runs it in
//! release at the same size as `proxyscope bench` (10,000 Services x 10 endpoints).
#![cfg(target_arch = "wasm32")]

use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::trace::Proto;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn demo_traces_like_native() {
    let s = api::load_scenario(api::DEMO_SCENARIO)
        .expect("demo loads")
        .scenario;
    let mut sess = Session::new(&s);
    // Hand derivation (as in native-agent/tests/cli.rs): a Pod on this node reaches each of the
    // three Pods with probability 1/3 and is not masqueraded.
    let t = sess.trace(&TraceRequest {
        src: "10.0.0.100".parse().unwrap(),
        dst: "10.104.14.67".parse().unwrap(),
        dport: 80,
        proto: Proto::Tcp,
        sport: None,
        seed: 3,
        now: 0.0,
    });
    assert_eq!(t.output, "10.0.0.2:80, 10.0.0.3:80, 10.0.0.4:80");
    assert!(!t.masq);
    let sum: f64 = t.outcomes.iter().map(|o| o.probability).sum();
    assert!((sum - 1.0).abs() < 1e-12);
}

#[wasm_bindgen_test]
#[ignore = "benchmark: scripts/wasm-bench.sh runs it in release"]
fn trace_to_the_last_service_timing() {
    let services = 10_000;
    let yaml = proxyscope_core::generate::large_cluster(services, 10);
    let s = api::load_scenario(&yaml)
        .expect("generated cluster loads")
        .scenario;
    let mut sess = Session::new(&s);
    let last = api::service_targets(&s)
        .into_iter()
        .rfind(|t| t.kind == "cluster_ip")
        .unwrap();
    let src = api::client_presets(&s)[0].src;
    let req = TraceRequest {
        src,
        dst: last.dst,
        dport: last.dport,
        proto: last.proto,
        sport: Some(40000),
        seed: 1,
        now: 0.0,
    };
    let n = 2000;
    for _ in 0..50 {
        sess.state = Default::default();
        sess.trace(&req);
    }
    // Measured as `proxyscope bench` measures native: blocks of 2,000, median and best of 5.
    let mut evaluated = 0;
    let mut blocks = Vec::new();
    for _ in 0..5 {
        let t0 = js_sys::Date::now();
        for _ in 0..n {
            sess.state = Default::default();
            evaluated = sess.trace(&req).rules_evaluated;
        }
        blocks.push((js_sys::Date::now() - t0) * 1000.0 / n as f64);
    }
    blocks.sort_by(f64::total_cmp);
    assert!(evaluated > services);
    console_log!(
        "wasm: trace to the last of {services} Services ({evaluated} rules evaluated): {:.1} us per packet (median of 5 blocks of {n}; best {:.1} us)",
        blocks[2],
        blocks[0]
    );
}
