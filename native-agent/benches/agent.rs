//! What one poll costs the agent on a big node, on a kube-proxy-generated `iptables-save` dump
//! (core's `large_cluster`: N Services x 10 endpoints; 10,000 Services ≈ 300k rules):
//! - `collect_first`: parse the dump with core's parser, count, fingerprint, build the JSON value;
//! - `poll_unchanged`: the steady state, a poll that finds nothing new (fingerprint only, no parse);
//! - `apply_changed`: publishing a rule change (new snapshot JSON + diff message; the collect
//!   that precedes it is setup, measured by `collect_first`).
//!
//! Run: `cargo bench -p proxyscope --bench agent` (PROXYSCOPE_BENCH_SERVICES=1000,10000 to choose).
//!
//! Besides criterion's timings it prints, per size: the bytes the hub holds between polls (the
//! agent's steady memory beyond the runtime, counted by a wrapping global allocator) and the peak
//! during a changed poll; and, as root with `ip netns`, the same dump loaded into a scratch
//! network namespace so a changed poll is compared with the kernel's own `iptables-save` of it
//! (the target: our work adds < 5% to what iptables-save takes).

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::hub::Hub;
use agent::snapshot::{Fingerprints, collect};
use agent::sys::{Sys, ToolError};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proxyscope_core::api;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::rules::iptables::Family;

/// Live heap bytes and their high-water mark.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mb(b: usize) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Wall time of `iptables-save` over `rules` loaded into a scratch namespace (deleted
/// on every path), or why it could not be measured.
fn kernel_save_time(rules: &str) -> Result<Duration, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("needs root".into());
    }
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let ns = Ns(format!("psbench-{}", std::process::id()));
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("ip").args(["netns", "add", &ns.0])) {
        return Err("ip netns add failed".into());
    }
    for c in [
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ] {
        ok(Command::new("ip").args(["netns", "exec", &ns.0, "nfacct", "add", c]));
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables-restore"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .map_err(|e| e.to_string())?;
    if !child.wait().is_ok_and(|s| s.success()) {
        return Err("iptables-restore failed".into());
    }
    // One run: with the nf_tables backend, iptables-save of 10k Services takes minutes.
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables-save"])
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    black_box(out.stdout.len());
    Ok(took)
}

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
        let none = Fingerprints::new();

        // Memory: what the hub keeps between polls, and the peak of a poll that finds a change.
        let before = LIVE.load(Ordering::Relaxed);
        let hub = Hub::new(serde_json::json!({}), collect(&sys, &none));
        let held = LIVE.load(Ordering::Relaxed) - before;
        let changed = OnlyIptables(text.replacen("-A ", "-A KUBE-FORWARD -j ACCEPT\n-A ", 1));
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        assert!(hub.apply(collect(&changed, &hub.fingerprints())).is_some());
        let peak = PEAK.load(Ordering::Relaxed) - base;
        println!(
            "{services} Services: hub holds {} between polls (dump text {}); a changed poll peaks {} above that",
            mb(held),
            mb(text.len()),
            mb(peak)
        );
        // A changed poll against the kernel's own dump time (the tool's text is already in
        // memory here, as it is once iptables-save has written it).
        let mut polls = Vec::new();
        let mut flip = false;
        for _ in 0..5 {
            flip = !flip;
            let t = Instant::now();
            let c = collect(if flip { &sys } else { &changed }, &hub.fingerprints());
            assert!(hub.apply(c).is_some());
            polls.push(t.elapsed());
        }
        let poll = median(polls);
        match kernel_save_time(&text) {
            Ok(k) => println!(
                "{services} Services: changed poll {poll:.0?}, kernel iptables-save {k:.0?}: {:.1}% on top",
                100.0 * poll.as_secs_f64() / k.as_secs_f64()
            ),
            Err(why) => println!(
                "{services} Services: changed poll {poll:.0?} (kernel iptables-save not measured: {why})"
            ),
        }
        drop(hub);

        let mut g = c.benchmark_group(format!("agent/{services}svc"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(rules as u64));
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
