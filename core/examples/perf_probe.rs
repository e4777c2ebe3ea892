//! Quick timing probe (not a benchmark): cargo run --release -p proxyscope-core --example perf_probe
use proxyscope_core::api::{Session, TraceRequest};
use proxyscope_core::proxier::iptables as m;
use proxyscope_core::rules::iptables::{Family, parse};
use std::time::Instant;

fn main() {
    let t = Instant::now();
    let yaml = proxyscope_core::generate::large_cluster(10_000, 10);
    println!("yaml {} bytes in {:?}", yaml.len(), t.elapsed());
    let t = Instant::now();
    let s = proxyscope_core::api::load_scenario(&yaml).unwrap().scenario;
    println!("load {:?}", t.elapsed());
    let t = Instant::now();
    let fr = m::generate(&s, Family::V4);
    println!("generate {:?} ({} bytes)", t.elapsed(), fr.payload.len());
    let saved = m::saved_text(&fr);
    println!("saved {} bytes, {} lines", saved.len(), saved.lines().count());
    let t = Instant::now();
    let p = parse(&saved, Family::V4);
    println!("parse saved {:?} ({} rules, {} diags)", t.elapsed(), p.ruleset.rule_count(), p.diagnostics.len());
    let t = Instant::now();
    let mut sess = Session::new(&s);
    println!("session {:?}", t.elapsed());
    let targets = proxyscope_core::api::service_targets(&s);
    let last = targets.iter().filter(|t| t.kind == "cluster_ip").last().unwrap().clone();
    let req = TraceRequest { src: "10.244.1.100".parse().unwrap(), dst: last.dst, dport: last.dport, proto: last.proto, sport: None, seed: 1, now: 0.0 };
    let n = 2000;
    let t = Instant::now();
    let mut ev = 0;
    for _ in 0..n {
        let tr = sess.trace(&req);
        ev = tr.rules_evaluated;
    }
    println!("trace last service: {:?} per packet, rules_evaluated {}", t.elapsed() / n, ev);
    let tr = sess.trace(&req);
    let mut per_chain = std::collections::BTreeMap::new();
    for st in &tr.steps {
        match st {
            proxyscope_core::trace::Step::Rule { table, chain, .. } => *per_chain.entry(format!("{table}/{chain}")).or_insert(0) += 1,
            proxyscope_core::trace::Step::Skipped { table, chain, first, last, .. } => *per_chain.entry(format!("{table}/{chain} skipped")).or_insert(0) += last - first + 1,
            _ => {}
        }
    }
    println!("{per_chain:?} outcomes {}", tr.outcomes.len());
    let t = Instant::now();
    let svcs = proxyscope_core::proxier::service_ports(&s, false);
    println!("service_ports {:?}", t.elapsed());
    let t = Instant::now();
    for sp in &svcs { let _ = proxyscope_core::proxier::categorize(&sp.endpoints, &sp.port); }
    println!("categorize {:?}", t.elapsed());
    let t = Instant::now();
    for sp in &svcs { let _ = m::service_chain("KUBE-SVC-", &sp.port); for e in &sp.endpoints { let _ = m::endpoint_chain(&sp.port, e); } }
    println!("hashes {:?}", t.elapsed());
}
