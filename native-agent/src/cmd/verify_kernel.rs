//! `proxyscope verify-kernel --mode iptables --seeds N`: the differential suite against the
//! running kernel (see `kernel::diff`). Needs root and network namespaces; touches only the
//! namespaces it creates.

use crate::error::{CliError, read_input};
use crate::kernel::diff::{
    self, AffinityTest, Class, Flow, Node, Options, Prediction, SPLIT_ALPHA,
};
use crate::kernel::netfilter::{Backend, CountedRule, Family};
use crate::kernel::sys;
use crate::kernel::world::Client;
use clap::{Args, ValueEnum};
use proxyscope_core::api::{EXAMPLES, Session};
use proxyscope_core::generate::random_scenario;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Iptables,
    Ipvs,
}

/// `--backend`: which iptables implementation loads the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Nft,
    Legacy,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Nft => Backend::Nft,
            BackendArg::Legacy => Backend::Legacy,
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyKernelArgs {
    /// Proxy mode to verify (only iptables: this kernel has no IPVS)
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// iptables implementation to load the rules with (iptables-nft or iptables-legacy)
    #[arg(long, value_enum, default_value = "nft")]
    pub backend: BackendArg,
    /// Number of random scenarios (seeds SEED_START…SEED_START+N-1)
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// First seed
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Extra scenario files (YAML, as `kubectl get -o yaml` prints)
    #[arg(long = "scenario")]
    pub scenarios: Vec<PathBuf>,
    /// Skip the example scenarios shipped with proxyscope
    #[arg(long)]
    pub no_examples: bool,
    /// Milliseconds a probe waits before calling the packet dropped
    #[arg(long, default_value_t = 300)]
    pub timeout_ms: u64,
    /// Most connections per random-split (chi-square) test; each test sends enough that its
    /// least likely backend expects 25 hits (at least 50)
    #[arg(long, default_value_t = 400)]
    pub split_samples: usize,
    /// Scenarios verified at the same time, each in its own namespaces (default: 4 per CPU, at
    /// most 8; most of a scenario's time is spent waiting — affinity timeouts, probe
    /// timeouts — not computing)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Skip the random-split test
    #[arg(long)]
    pub no_split: bool,
    /// Skip the session-affinity stickiness/expiry test
    #[arg(long)]
    pub no_affinity: bool,
    /// Print every flow, not only disagreements
    #[arg(long, short)]
    pub verbose: bool,
}

/// Per-scenario tallies for the summary table.
#[derive(Default)]
struct Tally {
    name: String,
    round_trip: String,
    flows: usize,
    agree: usize,
    /// Connections the kernel saw (flows, split samples, affinity probes).
    connections: usize,
    split: (usize, usize),
    affinity: (usize, usize),
    /// Flows with a reported-only difference (see `diff::notes`).
    noted: usize,
    /// Observations repeated because another connection showed up during them.
    retries: usize,
    error: Option<String>,
    secs: f64,
    /// Seconds per phase, see [`PHASES`].
    phases: [f64; PHASES.len()],
    /// Features of the scenario's programmed Services, see [`FEATURES`].
    features: [bool; FEATURES.len()],
    /// Everything the scenario printed (disagreements, notes, verbose lines), kept together
    /// so parallel scenarios do not interleave.
    out: String,
}

/// Where a scenario's time goes.
const PHASES: [&str; 8] = [
    "namespaces",
    "addresses+listeners",
    "iptables-restore",
    "round-trip save",
    "flows (kernel)",
    "flows (core)",
    "split tests",
    "affinity tests",
];

impl Tally {
    fn ok(&self) -> bool {
        self.error.is_none()
            && self.round_trip == "ok"
            && self.agree == self.flows
            && self.split.0 == self.split.1
            && self.affinity.0 == self.affinity.1
    }
}

/// Shapes the suite must see, per programmed Service port (kube-proxy skips ExternalName and
/// headless Services, so they program nothing to compare).
const FEATURES: [&str; 17] = [
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "eTP Local",
    "eTP Cluster",
    "iTP Local",
    "affinity",
    "terminating-only",
    "no endpoints",
    "source ranges",
    "externalIPs",
    "multiport",
    "TCP",
    "UDP",
    "IPv4",
    "IPv6",
    "random split",
];

fn features(families: &[proxyscope_core::proxier::iptables::FamilyRules]) -> [bool; 17] {
    use proxyscope_core::trace::Proto;
    let mut f = [false; 17];
    for fr in families {
        for (sp, cat) in &fr.service_ports {
            let eps = cat.cluster.iter().chain(&cat.local);
            f[0] |= sp.service_type == "ClusterIP";
            f[1] |= sp.service_type == "NodePort";
            f[2] |= sp.service_type == "LoadBalancer";
            f[3] |= sp.externally_accessible() && sp.external_policy_local;
            f[4] |= sp.externally_accessible() && !sp.external_policy_local;
            f[5] |= sp.internal_policy_local;
            f[6] |= sp.affinity_seconds.is_some();
            f[7] |= cat.cluster.iter().chain(&cat.local).next().is_some()
                && eps.clone().all(|e| !e.ready && e.terminating);
            f[8] |= !cat.has_any && cat.local.is_empty();
            f[9] |= !sp.source_ranges.is_empty();
            f[10] |= !sp.external_ips.is_empty();
            f[11] |= fr
                .service_ports
                .iter()
                .filter(|(o, _)| o.namespace == sp.namespace && o.name == sp.name)
                .count()
                > 1;
            f[12] |= sp.protocol == Proto::Tcp;
            f[13] |= sp.protocol == Proto::Udp;
            f[14] |= sp.cluster_ip.is_ipv4();
            f[15] |= sp.cluster_ip.is_ipv6();
            f[16] |= cat.reachable.len() >= 2;
        }
    }
    f
}

pub fn run(a: VerifyKernelArgs) -> Result<(), CliError> {
    if a.mode == Mode::Ipvs {
        return Err(CliError::BadInput(
            "verify-kernel --mode ipvs: not supported (this harness drives iptables; the kernel here has no IPVS)".into(),
        ));
    }
    if let Some(why) = sys::netns_unavailable_reason() {
        return Err(CliError::BadInput(format!(
            "verify-kernel needs root and network namespaces ({why}); run it as root, e.g. `sudo proxyscope verify-kernel …`"
        )));
    }
    if a.jobs == Some(0) {
        return Err(CliError::BadInput(
            "verify-kernel --jobs: must be at least 1".into(),
        ));
    }
    let mut scenarios: Vec<(String, String)> = Vec::new();
    if !a.no_examples {
        scenarios.extend(
            EXAMPLES
                .iter()
                .map(|(n, t)| (format!("example {n}"), t.to_string())),
        );
    }
    for p in &a.scenarios {
        scenarios.push((p.display().to_string(), read_input(p)?));
    }
    for seed in a.seed_start..a.seed_start.saturating_add(a.seeds) {
        scenarios.push((format!("seed {seed}"), random_scenario(seed)));
    }
    let opts = Options {
        timeout: Duration::from_millis(a.timeout_ms),
        split_test: !a.no_split,
        affinity_test: !a.no_affinity,
    };
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() * 4))
        .clamp(1, 8)
        .min(scenarios.len().max(1));
    let started = Instant::now();
    // Bounded parallelism: `jobs` workers, each building one world at a time (unique
    // namespace names per world), taking the next scenario from a shared counter.
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Tally>>> = scenarios.iter().map(|_| Mutex::new(None)).collect();
    let print_lock = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, text)) = scenarios.get(i) else {
                        break;
                    };
                    let t = verify_scenario(name, text, &opts, &a);
                    {
                        let _guard = print_lock.lock().unwrap_or_else(|e| e.into_inner());
                        print!("{}", t.out);
                        eprintln!(
                            "verify-kernel: {name}: {}/{} flows agree, round trip {}, {:.1} s{}",
                            t.agree,
                            t.flows,
                            if t.round_trip.is_empty() {
                                "-"
                            } else {
                                &t.round_trip
                            },
                            t.secs,
                            t.error
                                .as_ref()
                                .map(|e| format!(", ERROR {e}"))
                                .unwrap_or_default()
                        );
                    }
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                }
            });
        }
    });
    let tallies: Vec<Tally> = slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    println!(
        "\n{}",
        summary(&tallies, started.elapsed().as_secs_f64(), jobs, a.backend)
    );
    let bad: Vec<&Tally> = tallies.iter().filter(|t| !t.ok()).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        let names: Vec<&str> = bad.iter().map(|t| t.name.as_str()).collect();
        Err(CliError::CheckFailed(format!(
            "the kernel disagrees with core in: {}",
            names.join(", ")
        )))
    }
}

fn verify_scenario(name: &str, text: &str, opts: &Options, a: &VerifyKernelArgs) -> Tally {
    let started = Instant::now();
    let mut t = Tally {
        name: name.to_owned(),
        ..Tally::default()
    };
    // A panic inside one scenario (a harness bug) is that scenario's error, not the run's:
    // the world's namespaces are dropped during unwinding either way.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify_one(name, text, opts, a, &mut t)
    }));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => t.error = Some(e),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            t.error = Some(format!("harness panicked: {msg}"));
        }
    }
    t.secs = started.elapsed().as_secs_f64();
    t
}

fn summary(tallies: &[Tally], wall: f64, jobs: usize, backend: BackendArg) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>10} {:>6} {:>6} {:>9} {:>6} {:>8} {:>8} {:>6} {:>6}",
        "scenario",
        "round-trip",
        "flows",
        "agree",
        "disagree",
        "split",
        "affinity",
        "snat-src",
        "conns",
        "secs"
    );
    for t in tallies {
        let _ = writeln!(
            s,
            "{:<40} {:>10} {:>6} {:>6} {:>9} {:>6} {:>8} {:>8} {:>6} {:>6.1}{}",
            t.name,
            t.round_trip,
            t.flows,
            t.agree,
            t.flows - t.agree,
            format!("{}/{}", t.split.0, t.split.1),
            format!("{}/{}", t.affinity.0, t.affinity.1),
            t.noted,
            t.connections,
            t.secs,
            t.error
                .as_ref()
                .map(|e| format!("  ERROR: {e}"))
                .unwrap_or_default()
        );
    }
    let sum = |f: &dyn Fn(&Tally) -> usize| tallies.iter().map(f).sum::<usize>();
    let (f, ag) = (sum(&|t| t.flows), sum(&|t| t.agree));
    let noted = sum(&|t| t.noted);
    let retries = sum(&|t| t.retries);
    let conns = sum(&|t| t.connections);
    let (sp_ok, sp) = (sum(&|t| t.split.0), sum(&|t| t.split.1));
    let (af_ok, af) = (sum(&|t| t.affinity.0), sum(&|t| t.affinity.1));
    let rt_ok = tallies.iter().filter(|t| t.round_trip == "ok").count();
    let errors = tallies.iter().filter(|t| t.error.is_some()).count();
    let seeds = tallies
        .iter()
        .filter(|t| t.name.starts_with("seed "))
        .count();
    let mut phases = [0.0; PHASES.len()];
    for t in tallies {
        for (p, x) in phases.iter_mut().zip(t.phases) {
            *p += x;
        }
    }
    let phase_text: Vec<String> = PHASES
        .iter()
        .zip(phases)
        .map(|(n, x)| format!("{n} {x:.1}"))
        .collect();
    let _ = writeln!(
        s,
        "time per phase, summed over scenarios (s): {}",
        phase_text.join(", ")
    );
    let covered: Vec<String> = FEATURES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let k = tallies.iter().filter(|t| t.features[i]).count();
            format!("{n} {k}")
        })
        .collect();
    let missing: Vec<&str> = FEATURES
        .iter()
        .enumerate()
        .filter(|(i, _)| !tallies.iter().any(|t| t.features[*i]))
        .map(|(_, n)| *n)
        .collect();
    let _ = writeln!(
        s,
        "coverage (scenarios with each shape): {}{}",
        covered.join(", "),
        if missing.is_empty() {
            String::new()
        } else {
            format!("; NOT COVERED: {}", missing.join(", "))
        }
    );
    let _ = write!(
        s,
        "total: {} scenarios ({seeds} random, {} others), {f} flows, {ag} agree, {} disagree, \
         {conns} connections, {rt_ok}/{} round trips ok, {sp_ok}/{sp} split tests ok, \
         {af_ok}/{af} affinity tests ok, {errors} errors, {noted} masquerade-source notes, \
         {retries} flows observed again (another connection appeared during the first look); \
         {wall:.1} s wall with {jobs} jobs (backend {})",
        tallies.len(),
        tallies.len() - seeds,
        f - ag,
        tallies.len(),
        match backend {
            BackendArg::Nft => "nft",
            BackendArg::Legacy => "legacy",
        }
    );
    s
}

fn rule_name(rules: &[CountedRule], key: &(String, String, usize)) -> String {
    rules
        .iter()
        .find(|r| r.table == key.0 && r.chain == key.1 && r.index == key.2)
        .map(|r| format!("{}: {}", r.table, r.text))
        .unwrap_or_else(|| format!("{}/{}#{}", key.0, key.1, key.2))
}

fn report(
    name: &str,
    flow: &Flow,
    k: &diff::KernelView,
    p: &Prediction,
    problems: &[String],
    rules: &[CountedRule],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "DISAGREE  {name}  {flow}  (source {})", k.src);
    for pr in problems {
        let _ = writeln!(s, "  - {pr}");
    }
    let _ = writeln!(
        s,
        "  kernel: {}  dnat={}  masq={}",
        k.observed.summary(),
        k.dnat.map(|d| d.to_string()).unwrap_or("-".into()),
        k.masq.map(|m| m.to_string()).unwrap_or("-".into())
    );
    let outs: Vec<String> = p
        .outcomes
        .iter()
        .map(|(c, pr, m)| format!("{c} p={pr:.4}{}", if *m { " masq" } else { "" }))
        .collect();
    let _ = writeln!(s, "  core:   {}", outs.join(" | "));
    let _ = writeln!(s, "  rules the kernel counted:");
    for r in &k.rules {
        let _ = writeln!(s, "      {}", rule_name(rules, r));
    }
    if let Some(cr) = &p.rules {
        let _ = writeln!(s, "  rules core's walk matched:");
        for r in cr {
            let _ = writeln!(s, "      {}", rule_name(rules, r));
        }
    }
    s
}

/// Seconds since `since`, and restart the clock.
fn lap(since: &mut Instant) -> f64 {
    let d = since.elapsed().as_secs_f64();
    *since = Instant::now();
    d
}

fn verify_one(
    name: &str,
    text: &str,
    opts: &Options,
    a: &VerifyKernelArgs,
    t: &mut Tally,
) -> Result<(), String> {
    let (node, mismatches) = Node::build(text, a.backend.into())?;
    t.phases[..4].copy_from_slice(&node.build_secs);
    t.features = features(&node.families);
    t.round_trip = if mismatches.is_empty() {
        "ok".into()
    } else {
        "DIFF".into()
    };
    for (fam, d) in &mismatches {
        let _ = writeln!(
            t.out,
            "ROUND-TRIP {name} {fam:?}: kernel iptables-save (+) vs core --format saved (-):\n{d}"
        );
    }
    let mut session = Session::new(&node.scenario);
    let nf = node.world.netfilter();
    let mut split_candidates: Vec<(Flow, Prediction)> = Vec::new();
    let mut clock = Instant::now();
    let flows = node.flows();
    let affinity_of = |flow: &Flow| {
        node.families
            .iter()
            .flat_map(|fr| &fr.service_ports)
            .find(|(sp, _)| {
                flow.what.starts_with(&format!("{} ", sp.name_string)) && sp.protocol == flow.proto
            })
            .and_then(|(sp, _)| sp.affinity_seconds)
    };
    // One affinity test per scenario, on the Service with the shortest timeout among
    // ClusterIPs with two or more backends; it starts before the flows and finishes after
    // them, so its wait for expiry (timeouts up to 5 s; longer ones are checked for
    // stickiness only) overlaps them.
    let mut affinity = None;
    if opts.affinity_test {
        let mut candidates: Vec<(&Flow, u32)> = flows
            .iter()
            .filter(|f| f.client == Client::External && f.what.ends_with("cluster IP"))
            .filter_map(|f| affinity_of(f).map(|s| (f, s)))
            .filter(|(f, _)| {
                let src = node.world.source(f.client, f.dst.ip());
                diff::predicted_backends(&mut session, f, src) >= 2
            })
            .collect();
        candidates.sort_by_key(|(_, s)| *s);
        if let Some((flow, secs)) = candidates.first() {
            affinity = Some(
                AffinityTest::begin(&node.world, &node.scenario, flow, *secs, opts)
                    .map_err(|e| format!("{flow}: {e}"))?,
            );
        }
        t.phases[7] += lap(&mut clock);
    }
    for flow in flows {
        let k = diff::observe(&node.world, &flow, opts).map_err(|e| format!("{flow}: {e}"))?;
        t.phases[4] += lap(&mut clock);
        t.connections += 1 + k.retries;
        t.retries += k.retries;
        let p = diff::predict(&mut session, &flow, &k);
        let problems = diff::disagreements(&k, &p);
        let notes = diff::notes(&k, &p, &node.pod_nets);
        t.phases[5] += lap(&mut clock);
        if !notes.is_empty() {
            t.noted += 1;
            if a.verbose || t.noted <= 3 {
                let _ = writeln!(t.out, "note      {name}  {flow}  {}", notes.join("; "));
            }
        }
        t.flows += 1;
        if problems.is_empty() {
            t.agree += 1;
            if a.verbose {
                let _ = writeln!(
                    t.out,
                    "agree     {name}  {flow}  kernel {}  masq={:?}",
                    k.observed.summary(),
                    k.masq
                );
            }
        } else {
            // The counters still hold this flow's counts; read them again for the rule texts.
            let rules = diff::rule_texts(&nf, Family::of(flow.dst.ip()));
            let _ = writeln!(t.out, "{}", report(name, &flow, &k, &p, &problems, &rules));
        }
        let backends = p
            .outcomes
            .iter()
            .filter(|(c, pr, _)| matches!(c, Class::Backend(_)) && *pr > 0.0)
            .count();
        if flow.client == Client::External
            && flow.what.ends_with("cluster IP")
            && backends >= 2
            && affinity_of(&flow).is_none()
        {
            split_candidates.push((flow.clone(), p.clone()));
        }
        clock = Instant::now();
    }
    if opts.split_test {
        // Bounded: the two Services with the most backends. Every other Service's flows were
        // still checked above for landing inside core's outcomes.
        split_candidates.sort_by_key(|(_, p)| std::cmp::Reverse(p.outcomes.len()));
        for (flow, p) in split_candidates.iter().take(2) {
            t.split.1 += 1;
            // At α = 0.001 per sample, some 400 split tests per CI run would raise a false
            // alarm in a third of the runs. A rejected sample is therefore confirmed by a
            // second, independent one twice as large: a split fails when both reject (a
            // correct split then fails 1 time in 10⁶), while a real skew, which the bigger
            // sample sees more clearly, still fails.
            let mut lines = Vec::new();
            let mut passed = false;
            for (attempt, max_n) in [a.split_samples, a.split_samples * 2]
                .into_iter()
                .enumerate()
            {
                let r = diff::split_test(&node.world, flow, p, max_n, attempt + 1, opts)
                    .map_err(|e| format!("{flow}: {e}"))?;
                let sent = r.backends.iter().map(|b| b.2).sum::<u64>() + r.unexpected;
                t.connections += sent as usize;
                let counts: Vec<String> = r
                    .backends
                    .iter()
                    .map(|(b, pr, n)| format!("{b} {n} (p={pr:.3})"))
                    .collect();
                lines.push(format!(
                    "{name}  {flow}  sample {}: n={sent}  χ²={:.2} (critical {:.2} at α={SPLIT_ALPHA}, df={})  unexpected={}  [{}]",
                    attempt + 1,
                    r.statistic,
                    r.critical,
                    r.backends.len().saturating_sub(1),
                    r.unexpected,
                    counts.join(", ")
                ));
                if r.passed() {
                    passed = true;
                    break;
                }
                if r.unexpected > 0 {
                    // A backend core gives no chance (or silence) is not sampling noise.
                    break;
                }
            }
            if passed {
                t.split.0 += 1;
                if a.verbose || lines.len() > 1 {
                    for l in &lines {
                        let _ = writeln!(t.out, "split ok  {l}");
                    }
                }
            } else {
                for l in &lines {
                    let _ = writeln!(t.out, "SPLIT DISAGREES  {l}");
                }
            }
        }
        t.phases[6] += lap(&mut clock);
    }
    if let Some(test) = affinity {
        let (flow, secs) = (test.flow.clone(), test.timeout_s);
        let what = if test.checks_expiry() {
            format!("timeout {secs}s, sticky then expired")
        } else {
            format!(
                "timeout {secs}s, sticky (expiry only waited for up to {}s)",
                diff::AFFINITY_EXPIRY_MAX_S
            )
        };
        t.connections += test.connections();
        let problems = test
            .finish(&node.world, opts)
            .map_err(|e| format!("{flow}: {e}"))?;
        t.affinity.1 += 1;
        if problems.is_empty() {
            t.affinity.0 += 1;
            if a.verbose {
                let _ = writeln!(t.out, "affinity ok  {name}  {flow}  {what}");
            }
        } else {
            let _ = writeln!(t.out, "AFFINITY DISAGREES  {name}  {flow}  {what}");
            for p in problems {
                let _ = writeln!(t.out, "  - {p}");
            }
        }
        t.phases[7] += lap(&mut clock);
    }
    Ok(())
}
