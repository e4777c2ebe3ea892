//! `proxyscope trace`: walk one packet through the node's rules.

use crate::error::{CliError, read_input};
use clap::Args;
use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::trace::{Proto, Step, Trace};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Trace a packet through kube-proxy's rules, hook by hook and rule by rule.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  proxyscope trace --mode iptables examples/demo.yaml --src 10.0.0.100 --dst 10.104.14.67:80\n  proxyscope trace --mode iptables examples/nodeport-local.yaml --src 203.0.113.10 --dst 192.168.10.11:30080 --json\n  proxyscope trace --mode iptables examples/demo.yaml --rules node-dump.txt --src 192.168.0.2 --dst 10.104.14.67:80\n  proxyscope trace --mode ipvs examples/ipvs-demo.yaml --src 10.0.0.100 --dst 10.104.14.67:80"
)]
pub struct TraceArgs {
    /// Proxy mode.
    #[arg(long, value_enum, default_value = "iptables")]
    pub mode: super::rules::Mode,
    /// Scenario file; with --rules it only supplies the node (addresses, pod CIDR).
    pub scenario: PathBuf,
    /// Source address. A node-local address is traced as locally generated (OUTPUT path).
    #[arg(long)]
    pub src: IpAddr,
    /// Destination address:port (`[v6]:port` for IPv6).
    #[arg(long)]
    pub dst: SocketAddr,
    /// Protocol.
    #[arg(long, default_value = "tcp", value_parser = parse_proto)]
    pub proto: Proto,
    /// Source port (default: a fresh ephemeral port).
    #[arg(long)]
    pub sport: Option<u16>,
    /// Trace through a real node's dump instead of the generated rules: `iptables-save` text in
    /// iptables mode; in IPVS mode `ipvsadm -Sn`, `ipset save` and `iptables-save` each under a
    /// `# <command>` header line (what `rules --mode ipvs` prints).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Seed for the random draws of `-m statistic`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object (output, masq, outcomes, rules_evaluated, steps, ...); with
    /// `--count` above 1, a JSON array of them.
    #[arg(long)]
    pub json: bool,
    /// Send this many packets through the same session (conntrack, IPVS connections and
    /// persistence templates carry over). With `--sport` they belong to one connection;
    /// without, each is a new connection from a fresh port.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub count: u32,
    /// Seconds between those packets (time only moves when this says so).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    Proto::parse(s).ok_or_else(|| format!("`{s}` is not tcp, udp or sctp"))
}

pub fn run(a: TraceArgs) -> Result<(), CliError> {
    let s = super::scenario::load(&a.scenario)?;
    let ipvs = a.mode == super::rules::Mode::Ipvs;
    let mut session = match &a.rules {
        Some(p) => {
            let text = read_input(p)?;
            let (sess, diags) = if ipvs {
                Session::from_ipvs_dump(&s, &text)
            } else {
                Session::from_dump(&s, &text)
            };
            let mut errors = Vec::new();
            for d in &diags {
                if d.is_error() {
                    errors.push(format!("{}: {d}", p.display()));
                } else {
                    eprintln!("{}: {d}", p.display());
                }
            }
            if !errors.is_empty() {
                return Err(CliError::BadInput(format!(
                    "the rules dump has errors:\n{}",
                    errors.join("\n")
                )));
            }
            sess
        }
        None if ipvs => Session::new_ipvs(&s),
        None => Session::new(&s),
    };
    if a.src.is_ipv6() != a.dst.ip().is_ipv6() {
        return Err(CliError::BadInput(format!(
            "--src {} and --dst {} are of different IP families",
            a.src, a.dst
        )));
    }
    if !(a.interval.is_finite() && a.interval >= 0.0) {
        return Err(CliError::BadInput(format!(
            "--interval {}: expected seconds, 0 or more",
            a.interval
        )));
    }
    let mut traces = Vec::new();
    for i in 0..a.count {
        let req = TraceRequest {
            src: a.src,
            dst: a.dst.ip(),
            dport: a.dst.port(),
            proto: a.proto,
            sport: a.sport,
            seed: a.seed.wrapping_add(u64::from(i)),
            now: f64::from(i) * a.interval,
        };
        traces.push(session.trace(&req));
    }
    if a.json {
        let v = if let [t] = traces.as_slice() {
            serde_json::to_string_pretty(t)
        } else {
            serde_json::to_string_pretty(&traces)
        };
        println!("{}", v.map_err(|e| CliError::Internal(e.to_string()))?);
        return Ok(());
    }
    for (i, t) in traces.iter().enumerate() {
        if traces.len() > 1 {
            println!(
                "=== packet {} at t={} s",
                i + 1,
                f64::from(i as u32) * a.interval
            );
        }
        print!("{}", render(t, session.client_kind(a.src)));
    }
    if let Some(table) = session.ipvs_table() {
        // The IPVS table after the walk: counters moved by the connections just made.
        println!("\n# ipvsadm -Ln (after the last packet)");
        print!(
            "{}",
            proxyscope_core::ipvs::ipvsadm::print_list(&table, Default::default())
        );
    }
    Ok(())
}

/// Human-readable walk.
pub fn render(t: &Trace, kind: api::ClientKind) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let p = &t.packet;
    let _ = writeln!(
        o,
        "packet {} {}:{} -> {} ({})",
        p.proto,
        p.src,
        p.sport,
        proxyscope_core::k8s::ip::join_host_port(p.dst, p.dport),
        match kind {
            api::ClientKind::Node => "generated on the node: OUTPUT path",
            api::ClientKind::LocalPod => "from a Pod on this node: PREROUTING path",
            api::ClientKind::Remote => "from outside the node: PREROUTING path",
        }
    );
    for s in &t.steps {
        match s {
            Step::Hook { hook, table } => {
                let _ = writeln!(o, "\n[{} / {}]", hook.as_str(), table);
            }
            Step::Conntrack { note, .. } => {
                let _ = writeln!(o, "  {note}");
            }
            Step::Route { note, .. } => {
                let _ = writeln!(o, "\n  {note}");
            }
            Step::Chain { chain, entry, .. } => {
                let _ = writeln!(
                    o,
                    "  -> chain {chain}{}",
                    match entry {
                        proxyscope_core::trace::Entry::Hook => "",
                        proxyscope_core::trace::Entry::Jump => " (jump)",
                        proxyscope_core::trace::Entry::Goto => " (goto)",
                    }
                );
            }
            Step::Rule {
                index,
                text,
                matched,
                failed,
                note,
                ..
            } => {
                let mark = if *matched { "MATCH" } else { "     " };
                let _ = writeln!(o, "    {mark} #{index:<4} {text}");
                if let Some(f) = failed {
                    let _ = writeln!(o, "               no match: {f}");
                }
                if let Some(n) = note {
                    let _ = writeln!(o, "               {n}");
                }
            }
            Step::Skipped {
                first,
                last,
                reason,
                ..
            } => {
                let _ = writeln!(
                    o,
                    "          #{first}..#{last}: {} rules cannot match ({reason})",
                    last - first + 1
                );
            }
            Step::ChainEnd { chain, policy, .. } => match policy {
                Some(v) => {
                    let _ = writeln!(o, "  end of {chain}: policy {v:?}");
                }
                None => {
                    let _ = writeln!(o, "  end of {chain}: return to the calling chain");
                }
            },
            Step::Return { chain, .. } => {
                let _ = writeln!(o, "  RETURN from {chain}");
            }
            Step::Mark { from, to } => {
                let _ = writeln!(o, "      mark {from:#x} -> {to:#x}");
            }
            Step::Dnat { from, to } => {
                let _ = writeln!(o, "      DNAT: destination {from} -> {to}");
            }
            Step::Snat {
                from,
                to,
                masquerade,
            } => {
                let _ = writeln!(
                    o,
                    "      {}: source {from} -> {to}",
                    if *masquerade { "MASQUERADE" } else { "SNAT" }
                );
            }
            Step::Recent {
                name,
                action,
                addr,
                hit,
            } => {
                let _ = writeln!(
                    o,
                    "      recent {action} {name} {addr}: {}",
                    if *hit { "hit" } else { "miss" }
                );
            }
            Step::IpvsLookup { note, .. } | Step::IpvsConnection { note, .. } => {
                let _ = writeln!(o, "  IPVS: {note}");
            }
            Step::IpvsSchedule {
                scheduler,
                server,
                reason,
            } => {
                let _ = writeln!(
                    o,
                    "  IPVS {scheduler}: {} ({reason})",
                    server.as_deref().unwrap_or("no server")
                );
            }
            Step::Note { text } => {
                let _ = writeln!(o, "      {text}");
            }
            Step::Verdict { verdict } => {
                let _ = writeln!(o, "\nverdict: {verdict:?}");
            }
        }
    }
    let _ = writeln!(
        o,
        "output: {}",
        if t.output.is_empty() {
            "(no kube-proxy rule changed the packet)"
        } else {
            &t.output
        }
    );
    let _ = writeln!(o, "masquerade: {}", t.masq);
    let _ = writeln!(o, "rules evaluated: {}", t.rules_evaluated);
    let _ = writeln!(o, "possible outcomes:");
    for oc in &t.outcomes {
        let _ = writeln!(
            o,
            "  {:>8.4}%  {}{}",
            oc.probability * 100.0,
            if oc.output.is_empty() {
                "(untouched)"
            } else {
                &oc.output
            },
            if oc.masq { "  (masqueraded)" } else { "" }
        );
    }
    for w in &t.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}
