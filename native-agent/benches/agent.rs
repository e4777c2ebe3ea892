//! What one poll costs the agent on a big node, on a kube-proxy-generated `iptables-save` dump
//! (core's `large_cluster`: N Services x 10 endpoints; 10,000 Services ≈ 300k rules):
//! - `collect_first`: parse the dump with core's parser, count, fingerprint, build the JSON value;
//! - `poll_unchanged`: the steady state, a poll that finds nothing new (fingerprint only, no parse);
//! - `apply_changed`: publishing a rule change (new snapshot JSON + diff message; the collect
//!   that precedes it is setup, measured by `collect_first`).
//!
//! Run: `cargo bench -p proxyscope --bench agent` (PROXYSCOPE_BENCH_SERVICES=1000,10000 to choose).
//! Compare with the kernel's own `iptables-save` time on the same rules (see deploy/README.md).

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::hint::black_box;

use agent::hub::Hub;
use agent::snapshot::{Fingerprints, collect};
use agent::sys::{Sys, ToolError};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proxyscope_core::api;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::rules::iptables::Family;

struct OnlyIptables(String);

impl Sys for OnlyIptables {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, ToolError> {
        match program {
            "iptables-save" => Ok(self.0.clone()),
            _ => Err(ToolError::Missing(format!("{program} is not installed"))),
        }
    }
}

fn dump(services: usize) -> String {
    let yaml = proxyscope_core::generate::large_cluster(services, 10);
    let scenario = api::load_scenario(&yaml)
        .unwrap_or_else(|d| panic!("generated scenario does not load: {:?}", d.first()))
        .scenario;
    ipt_mode::saved_text(&ipt_mode::generate(&scenario, Family::V4))
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("PROXYSCOPE_BENCH_SERVICES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    for services in sizes {
        let text = dump(services);
        let rules = text.lines().filter(|l| l.starts_with("-A")).count();
        println!(
            "{services} Services: {rules} rules, {:.1} MB of iptables-save",
            text.len() as f64 / 1e6
        );
        let sys = OnlyIptables(text.clone());
        let mut g = c.benchmark_group(format!("agent/{services}svc"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(rules as u64));
        let none = Fingerprints::new();
        g.bench_function("collect_first", |b| {
            b.iter(|| black_box(collect(&sys, &none)))
        });
        let hub = Hub::new(serde_json::json!({}), collect(&sys, &none));
        let known = hub.fingerprints();
        g.bench_function("poll_unchanged", |b| {
            b.iter(|| assert_eq!(hub.apply(collect(&sys, &known)), None))
        });
        let changed = OnlyIptables(text.replacen("-A ", "-A KUBE-FORWARD -j ACCEPT\n-A ", 1));
        let mut flip = false;
        g.bench_function("apply_changed", |b| {
            b.iter_batched(
                || {
                    flip = !flip;
                    collect(if flip { &changed } else { &sys }, &hub.fingerprints())
                },
                |c| assert!(hub.apply(c).is_some()),
                criterion::BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
