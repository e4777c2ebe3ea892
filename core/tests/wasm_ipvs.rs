//! The IPVS schedulers running in a real browser (headless Chromium via wasm-bindgen-test).
//!
//! 1. Every shared replay example (`shared/examples/ipvs-replay`, each carrying the Linux kernel's
//!    answers) replays with no mismatch in WASM too. wasm32 has a 32-bit `usize`, and the
//!    schedulers hash (hash_32, jhash for lblc/lblcr, SipHash-1-3 for mh) and index tables with
//!    it, so "it works natively" says nothing about the browser.
//! 2. (`#[ignore]`d, run by `scripts/wasm-bench.sh` in release) decisions per second for
//!    rr/wrr/lc/wlc/sh/mh with 100 and 10,000 real servers, and the mh table rebuild: issue 4's
//!    "≥ 2 million/s in WASM". Numbers are printed, never asserted.
#![cfg(target_arch = "wasm32")]

use proxyscope_core::ipvs::replay;
use proxyscope_core::ipvs::{NoRandom, SchedulerKind};
use wasm_bindgen_test::*;

#[path = "../benches/common/sched.rs"]
mod sched;

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! examples {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../../shared/examples/ipvs-replay/", $name, ".json")))),*]
    };
}

/// The kernel's answers for all 14 schedulers.
const EXAMPLES: [(&str, &str); 14] = examples!(
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"
);

#[wasm_bindgen_test]
fn every_kernel_example_replays_identically_in_wasm() {
    let mut checked = 0;
    for (name, text) in EXAMPLES {
        let doc = replay::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rep = replay::check(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(rep.conns > 0, "{name}: no connection was checked");
        assert!(rep.ok(), "{name} differs from the kernel in WASM:\n{rep}");
        checked += rep.conns;
    }
    console_log!("wasm: 14 kernel replay examples, {checked} connections, all match");
}

#[wasm_bindgen_test]
fn a_tampered_expectation_is_caught_in_wasm() {
    // The check above can fail: change one expected real server and it must.
    let (_, text) = EXAMPLES[0];
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    let events = v["scenarios"][0]["events"].as_array_mut().unwrap();
    let conn = events
        .iter_mut()
        .find(|e| e.get("expect").is_some_and(|x| x.is_string()))
        .expect("rr example has an expected server");
    conn["expect"] = serde_json::Value::String("203.0.113.254:1".into());
    let doc = replay::parse(&v.to_string()).unwrap();
    let rep = replay::check(&doc).unwrap();
    assert!(!rep.ok(), "a wrong expectation passed");
}

fn now_ms() -> f64 {
    // performance.now(): sub-millisecond in Chromium, unlike Date.now().
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| js_sys::Reflect::get(&p, &"now".into()).ok().map(|f| (p, f)))
        .and_then(|(p, f)| {
            js_sys::Function::from(f)
                .call0(&p)
                .ok()
                .and_then(|v| v.as_f64())
        })
        .unwrap_or_else(js_sys::Date::now)
}

#[wasm_bindgen_test]
#[ignore = "benchmark: scripts/wasm-bench.sh runs it in release"]
fn scheduling_decisions_per_second() {
    let keys = sched::keys();
    for kind in [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
    ] {
        for n in [100usize, 10_000] {
            let mut s = sched::service(kind, n);
            // Enough decisions for ~tens of ms even at the slow end.
            let iters: usize = if n > 1000 { 20_000 } else { 400_000 };
            let mut sink = 0usize;
            // Warm-up: let the engine tier the code up before timing it.
            for i in 0..iters / 10 {
                let d = s.schedule(&keys[i & 1023], 1.0, &mut NoRandom).unwrap();
                sink = sink.wrapping_add(d.dest.map_or(0, |x| x.0 as usize));
            }
            let t0 = now_ms();
            for i in 0..iters {
                let d = s.schedule(&keys[i & 1023], 1.0, &mut NoRandom).unwrap();
                sink = sink.wrapping_add(d.dest.map_or(0, |x| x.0 as usize));
            }
            let secs = (now_ms() - t0) / 1000.0;
            console_log!(
                "wasm: {:>4} with {:>5} servers: {:>6.2} M decisions/s (sink {})",
                kind.name(),
                n,
                iters as f64 / secs / 1e6,
                sink & 1
            );
        }
    }
    for n in [3usize, 100, 1000] {
        let mut s = sched::service(SchedulerKind::Mh, n);
        let addr = s.dest(s.list()[0]).addr;
        let reps = 200;
        let t0 = now_ms();
        for r in 0..reps {
            // An edit runs upd_dest: full permutation + population of the 4093 entries.
            s.edit_dest(addr, 1 + (r % 7), 0, 0, 1.0).unwrap();
        }
        let per_ms = (now_ms() - t0) / reps as f64;
        console_log!("wasm: mh 4093-entry rebuild with {n} servers: {per_ms:.3} ms");
    }
}
