//! `proxyscope verify-kernel --mode iptables --seeds N`: the differential suite against the
//! running kernel (see `kernel::diff`). Needs root and network namespaces; touches only the
//! namespaces it creates.

use crate::error::{CliError, read_input};
use crate::kernel::diff::{self, Class, Flow, Node, Options, Prediction, SPLIT_ALPHA};
use crate::kernel::netfilter::{Backend, CountedRule, Family};
use crate::kernel::sys;
use clap::{Args, ValueEnum};
use proxyscope_core::api::{EXAMPLES, Session};
use proxyscope_core::generate::random_scenario;
use std::fmt::Write as _;
use std::path::PathBuf;
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
    /// Connections per random-split (chi-square) test
    #[arg(long, default_value_t = 200)]
    pub split_samples: usize,
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
    split: (usize, usize),
    affinity: (usize, usize),
    /// Flows with a reported-only difference (see `diff::notes`).
    noted: usize,
    /// Hairpin flows this world cannot observe (see `diff::observe_observable`).
    skipped: usize,
    error: Option<String>,
    secs: f64,
}

impl Tally {
    fn ok(&self) -> bool {
        self.error.is_none()
            && self.round_trip == "ok"
            && self.agree == self.flows
            && self.split.0 == self.split.1
            && self.affinity.0 == self.affinity.1
    }
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
    for seed in a.seed_start..a.seed_start + a.seeds {
        scenarios.push((format!("seed {seed}"), random_scenario(seed)));
    }
    let opts = Options {
        timeout: Duration::from_millis(a.timeout_ms),
        split_test: !a.no_split,
        affinity_test: !a.no_affinity,
    };
    let mut tallies = Vec::new();
    for (name, text) in &scenarios {
        let started = Instant::now();
        let mut t = Tally {
            name: name.clone(),
            ..Tally::default()
        };
        if let Err(e) = verify_one(name, text, &opts, &a, &mut t) {
            t.error = Some(e);
        }
        t.secs = started.elapsed().as_secs_f64();
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
        tallies.push(t);
    }
    println!("\n{}", summary(&tallies));
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

fn summary(tallies: &[Tally]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>10} {:>6} {:>6} {:>9} {:>6} {:>8} {:>8} {:>6}",
        "scenario",
        "round-trip",
        "flows",
        "agree",
        "disagree",
        "split",
        "affinity",
        "snat-src",
        "secs"
    );
    for t in tallies {
        let _ = writeln!(
            s,
            "{:<40} {:>10} {:>6} {:>6} {:>9} {:>6} {:>8} {:>8} {:>6.1}{}",
            t.name,
            t.round_trip,
            t.flows,
            t.agree,
            t.flows - t.agree,
            format!("{}/{}", t.split.0, t.split.1),
            format!("{}/{}", t.affinity.0, t.affinity.1),
            t.noted,
            t.secs,
            t.error
                .as_ref()
                .map(|e| format!("  ERROR: {e}"))
                .unwrap_or_default()
        );
    }
    let (f, ag): (usize, usize) = tallies
        .iter()
        .fold((0, 0), |(f, a), t| (f + t.flows, a + t.agree));
    let skipped: usize = tallies.iter().map(|t| t.skipped).sum();
    let noted: usize = tallies.iter().map(|t| t.noted).sum();
    let _ = write!(
        s,
        "total: {} scenarios, {f} flows, {ag} agree, {} disagree ({skipped} hairpin flows skipped, {noted} masquerade-source notes)",
        tallies.len(),
        f - ag
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

fn verify_one(
    name: &str,
    text: &str,
    opts: &Options,
    a: &VerifyKernelArgs,
    t: &mut Tally,
) -> Result<(), String> {
    let (node, mismatches) = Node::build(text, a.backend.into())?;
    t.round_trip = if mismatches.is_empty() {
        "ok".into()
    } else {
        "DIFF".into()
    };
    for (fam, d) in &mismatches {
        println!(
            "ROUND-TRIP {name} {fam:?}: kernel iptables-save (+) vs core --format saved (-):\n{d}"
        );
    }
    let mut session = Session::new(&node.scenario);
    let nf = node.world.netfilter();
    let mut split_candidates: Vec<(Flow, Prediction)> = Vec::new();
    let mut affinity_candidates: Vec<(Flow, u32)> = Vec::new();
    for flow in node.flows() {
        let Some(k) = diff::observe_observable(&node.world, &flow, opts)
            .map_err(|e| format!("{flow}: {e}"))?
        else {
            t.skipped += 1;
            if a.verbose {
                println!(
                    "skipped   {name}  {flow}  (the kernel never picked the Pod itself; see diff::observe_observable)"
                );
            }
            continue;
        };
        let p = diff::predict(&mut session, &flow, &k);
        let problems = diff::disagreements(&k, &p);
        let notes = diff::notes(&k, &p, &node.pod_nets);
        if !notes.is_empty() {
            t.noted += 1;
            if a.verbose || t.noted <= 3 {
                println!("note      {name}  {flow}  {}", notes.join("; "));
            }
        }
        t.flows += 1;
        if problems.is_empty() {
            t.agree += 1;
            if a.verbose {
                println!(
                    "agree     {name}  {flow}  kernel {}  masq={:?}",
                    k.observed.summary(),
                    k.masq
                );
            }
        } else {
            // The counters still hold this flow's counts; read them again for the rule texts.
            let rules = diff::rule_texts(&nf, Family::of(flow.dst.ip()));
            println!("{}", report(name, &flow, &k, &p, &problems, &rules));
        }
        let backends = p
            .outcomes
            .iter()
            .filter(|(c, pr, _)| matches!(c, Class::Backend(_)) && *pr > 0.0)
            .count();
        let sp = node
            .families
            .iter()
            .flat_map(|fr| &fr.service_ports)
            .find(|(sp, _)| {
                flow.what.starts_with(&format!("{} ", sp.name_string)) && sp.protocol == flow.proto
            });
        let affinity = sp.and_then(|(sp, _)| sp.affinity_seconds);
        if flow.client == crate::kernel::world::Client::External
            && flow.what.ends_with("cluster IP")
            && backends >= 2
        {
            match affinity {
                None => split_candidates.push((flow.clone(), p.clone())),
                Some(s) if s <= 5 => affinity_candidates.push((flow.clone(), s)),
                Some(_) => {}
            }
        }
    }
    if opts.split_test {
        // Bounded: the two Services with the most backends.
        split_candidates.sort_by_key(|(_, p)| std::cmp::Reverse(p.outcomes.len()));
        for (flow, p) in split_candidates.iter().take(2) {
            let r = diff::split_test(&node.world, flow, p, a.split_samples, opts)
                .map_err(|e| format!("{flow}: {e}"))?;
            t.split.1 += 1;
            let counts: Vec<String> = r
                .backends
                .iter()
                .map(|(b, pr, n)| format!("{b} {n} (p={pr:.3})"))
                .collect();
            let line = format!(
                "{name}  {flow}  χ²={:.2} (critical {:.2} at α={SPLIT_ALPHA}, df={})  unexpected={}  [{}]",
                r.statistic,
                r.critical,
                r.backends.len().saturating_sub(1),
                r.unexpected,
                counts.join(", ")
            );
            if r.passed() {
                t.split.0 += 1;
                if a.verbose {
                    println!("split ok  {line}");
                }
            } else {
                println!("SPLIT DISAGREES  {line}");
            }
        }
    }
    if opts.affinity_test {
        for (flow, secs) in affinity_candidates.iter().take(1) {
            let problems = diff::affinity_test(&node.world, &mut session, flow, *secs, opts)
                .map_err(|e| format!("{flow}: {e}"))?;
            t.affinity.1 += 1;
            if problems.is_empty() {
                t.affinity.0 += 1;
                if a.verbose {
                    println!("affinity ok  {name}  {flow}  timeout {secs}s");
                }
            } else {
                println!("AFFINITY DISAGREES  {name}  {flow}");
                for p in problems {
                    println!("  - {p}");
                }
            }
        }
    }
    Ok(())
}
