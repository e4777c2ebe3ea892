//! Talking to netfilter in the node namespace: load rules, read per-rule counters, read and
//! flush conntrack, reset `-m recent` lists. The parsers are pure functions over the tools'
//! text so they are tested with captured output.

use super::nl::{NFPROTO_IPV4, NFPROTO_IPV6, NfSocket};
pub use super::nl::{RuleCount, RuleCounters};
use super::sys::{self, SysError};
use super::world::Netns;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Address family of a ruleset (`iptables` vs `ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
    /// `iptables[-nft|-legacy][-restore|-save]` for this family and backend; `suffix` is ""
    /// (the command itself), "-restore" or "-save".
    pub fn tool(self, backend: Backend, suffix: &str) -> String {
        let fam = match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        format!("{fam}-{}{suffix}", backend.name())
    }
    fn nfproto(self) -> u8 {
        match self {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        }
    }
    fn conntrack_family(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Which iptables implementation loads and prints the rules. Both program the same kernel
/// hooks; they differ in the kernel API (nf_tables vs the x_tables blobs) and in printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Nft,
    Legacy,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

/// nfacct objects kube-proxy creates before writing rules that use `-m nfacct`
/// (pkg/proxy/iptables: localhost NodePort accounting and the conntrack-INVALID drop counter).
pub const KUBE_PROXY_NFACCT: [&str; 2] = [
    "localhost_nps_accepted_pkts",
    "ct_state_invalid_dropped_pkts",
];

/// Netfilter of one namespace, through one iptables backend.
pub struct Netfilter<'a> {
    pub ns: &'a Netns,
    pub backend: Backend,
    /// A netlink socket in `ns`: counters (nft backend) and conntrack without tool processes.
    pub nl: Option<&'a NfSocket>,
}

impl Netfilter<'_> {
    /// Create kube-proxy's nfacct objects (idempotent).
    pub fn add_nfacct(&self) -> Result<(), SysError> {
        let existing = self.ns.exec("nfacct", &["list"], None).unwrap_or_default();
        for name in KUBE_PROXY_NFACCT {
            if !existing.contains(&format!("= {name};")) {
                self.ns.exec("nfacct", &["add", name], None)?;
            }
        }
        Ok(())
    }

    /// `iptables-restore --noflush --counters` as kube-proxy does; `flush` = full replace instead.
    pub fn restore(&self, family: Family, payload: &str, flush: bool) -> Result<(), SysError> {
        let tool = family.tool(self.backend, "-restore");
        let args: &[&str] = if flush {
            &["--counters"]
        } else {
            &["--noflush", "--counters"]
        };
        self.ns.exec(&tool, args, Some(payload)).map(|_| ())
    }

    /// `iptables-save` (with `-c` counters when asked), `#` lines removed.
    pub fn save(&self, family: Family, counters: bool) -> Result<String, SysError> {
        let tool = family.tool(self.backend, "-save");
        let args: &[&str] = if counters { &["-c"] } else { &[] };
        let text = self.ns.exec(&tool, args, None)?;
        Ok(strip_comment_lines(&text))
    }

    /// Zero every rule and chain counter in the filter and nat tables.
    #[cfg(test)]
    pub fn zero_counters(&self, family: Family) -> Result<(), SysError> {
        let tool = family.tool(self.backend, "");
        for table in ["filter", "nat"] {
            self.ns.exec(&tool, &["-w", "-t", table, "-Z"], None)?;
        }
        Ok(())
    }

    /// Forget every connection, so the next probe is a NEW connection that walks the nat table.
    pub fn flush_conntrack(&self) -> Result<(), SysError> {
        if let Some(nl) = self.nl {
            return nl.flush_conntrack();
        }
        for fam in [Family::V4, Family::V6] {
            // conntrack -F exits non-zero on an empty table with some versions; that is fine.
            let _ = self
                .ns
                .exec("conntrack", &["-f", fam.conntrack_family(), "-F"], None);
        }
        Ok(())
    }

    /// Current conntrack entries of a family.
    pub fn conntrack(&self, family: Family) -> Result<Vec<CtEntry>, SysError> {
        if let Some(nl) = self.nl {
            let all = nl.conntrack()?;
            return Ok(all
                .into_iter()
                .filter(|e| Family::of(e.orig_src) == family)
                .collect());
        }
        // `-o extended` prefixes the family; exit status is 0 even when empty.
        let text = self.ns.exec(
            "conntrack",
            &["-L", "-f", family.conntrack_family(), "-o", "extended"],
            None,
        )?;
        Ok(parse_conntrack(&text))
    }

    /// The conntrack entry of one connection, by its original tuple.
    pub fn conntrack_get(
        &self,
        proto: proxyscope_core::trace::Proto,
        src: IpAddr,
        sport: u16,
        dst: std::net::SocketAddr,
    ) -> Result<Option<CtEntry>, SysError> {
        use proxyscope_core::trace::Proto;
        if let Some(nl) = self.nl {
            let num = match proto {
                Proto::Tcp => 6,
                Proto::Udp => 17,
                Proto::Sctp => 132,
            };
            return nl.conntrack_get(num, src, sport, dst.ip(), dst.port());
        }
        Ok(self.conntrack(Family::of(dst.ip()))?.into_iter().find(|e| {
            e.proto == proto.as_str()
                && e.orig_src == src
                && e.orig_sport == sport
                && e.orig_dst == dst.ip()
                && e.orig_dport == dst.port()
        }))
    }

    /// Every rule's packet counter in one family: over netlink for iptables-nft (rules live in
    /// nf_tables), from `iptables-legacy-save -c` for iptables-legacy.
    pub fn counters(&self, family: Family) -> Result<RuleCounters, SysError> {
        if let (Backend::Nft, Some(nl)) = (self.backend, self.nl) {
            return nl.rule_counters(family.nfproto());
        }
        let rules = parse_counted_rules(&self.save(family, true)?).map_err(SysError)?;
        Ok(group_counts(&rules))
    }

    // The ipset helpers wait for an IPVS-mode suite (this kernel has no IPVS); tested below.
    #[allow(dead_code)]
    /// `ipset restore` (IPVS mode's `KUBE-CLUSTER-IP`, `KUBE-NODE-PORT-*` … sets; `-exist` so a
    /// repeated sync is idempotent, as kube-proxy's ipset syncer is).
    pub fn restore_ipsets(&self, payload: &str) -> Result<(), SysError> {
        self.ns
            .exec("ipset", &["-exist", "restore"], Some(payload))
            .map(|_| ())
    }

    #[allow(dead_code)]
    /// `ipset save` output.
    pub fn save_ipsets(&self) -> Result<String, SysError> {
        self.ns.exec("ipset", &["save"], None)
    }

    /// How many connections conntrack tracks in the namespace (`nf_conntrack_count`, read from a
    /// thread inside it: the sysctl is per namespace).
    pub fn conntrack_count(&self) -> Result<u64, SysError> {
        sys::in_netns(&self.ns.name, || {
            let path = "/proc/sys/net/netfilter/nf_conntrack_count";
            let text = std::fs::read_to_string(path)
                .map_err(|e| SysError(format!("{}: {path}: {e}", self.ns.name)))?;
            text.trim()
                .parse::<u64>()
                .map_err(|e| SysError(format!("{}: {path}: {text:?}: {e}", self.ns.name)))
        })?
    }

    /// Remove one source address from every `-m recent` list (`-ADDR` written to each list):
    /// a clean slate for that client's next flow, leaving other clients' entries alone.
    pub fn forget_source(&self, src: IpAddr) -> Result<(), SysError> {
        sys::in_netns(&self.ns.name, || {
            let dir = std::path::Path::new("/proc/thread-self/net/xt_recent");
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Ok(());
            };
            for e in entries.flatten() {
                std::fs::write(e.path(), format!("-{src}\n"))
                    .map_err(|err| SysError(format!("{}: {err}", e.path().display())))?;
            }
            Ok(())
        })?
    }
}

/// Counters grouped by (table, chain) in rule order, from `iptables-save -c` rules.
pub fn group_counts(rules: &[CountedRule]) -> RuleCounters {
    let mut out = RuleCounters::new();
    for r in rules {
        let target = r.text.rsplit(" -j ").next().unwrap_or("");
        out.entry((r.table.clone(), r.chain.clone()))
            .or_default()
            .push(RuleCount {
                packets: r.packets,
                drops: r.text.contains(" -j ") && matches!(target, "DROP" | "KUBE-MARK-DROP"),
            });
    }
    out
}

/// Rules whose packet counter grew from `before` to `after`, as (table, chain, 1-based index),
/// with whether each drops.
pub fn moved(before: &RuleCounters, after: &RuleCounters) -> Vec<((String, String, usize), bool)> {
    let mut out = Vec::new();
    for ((table, chain), counts) in after {
        let old = before.get(&(table.clone(), chain.clone()));
        for (i, c) in counts.iter().enumerate() {
            let was = old.and_then(|o| o.get(i)).map_or(0, |o| o.packets);
            if c.packets > was {
                out.push(((table.clone(), chain.clone(), i + 1), c.drops));
            }
        }
    }
    out
}

/// The keys of [`moved`].
pub fn moved_rules(
    before: &RuleCounters,
    after: &RuleCounters,
) -> BTreeSet<(String, String, usize)> {
    moved(before, after).into_iter().map(|(k, _)| k).collect()
}

/// Drop the `# Generated by …` / `# Completed on …` lines (they carry a timestamp).
pub fn strip_comment_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Remove `[pkts:bytes]` counters: `:CHAIN POLICY [1:60]` → `:CHAIN POLICY [0:0]`, and the
/// `[1:60] -A …` prefix of `iptables-save -c` rule lines.
pub fn strip_counters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((_, rule)) = rest.split_once("] ")
        {
            out.push_str(rule);
        } else if line.starts_with(':')
            && let Some(i) = line.rfind(" [")
        {
            out.push_str(&line[..i]);
            out.push_str(" [0:0]");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// One rule of `iptables-save -c` with its packet counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedRule {
    pub table: String,
    pub chain: String,
    /// 1-based position in its chain.
    pub index: usize,
    /// The rule as printed, without the counter prefix (`-A CHAIN …`).
    pub text: String,
    pub packets: u64,
}

/// Parse `iptables-save -c` output into rules with counters. Lines that are not rules are
/// skipped; a malformed counter is an error naming the line.
pub fn parse_counted_rules(text: &str) -> Result<Vec<CountedRule>, String> {
    let mut table = String::new();
    let mut rules: Vec<CountedRule> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_owned();
            continue;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let (counters, rule) = rest
            .split_once("] ")
            .ok_or_else(|| format!("line {}: counter without rule: {line}", n + 1))?;
        let packets = counters
            .split_once(':')
            .and_then(|(p, _)| p.parse::<u64>().ok())
            .ok_or_else(|| format!("line {}: bad counter [{counters}]", n + 1))?;
        let chain = rule
            .strip_prefix("-A ")
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| format!("line {}: expected `-A CHAIN`: {rule}", n + 1))?
            .to_owned();
        let index = rules
            .iter()
            .filter(|r| r.table == table && r.chain == chain)
            .count()
            + 1;
        rules.push(CountedRule {
            table: table.clone(),
            chain,
            index,
            text: rule.to_owned(),
            packets,
        });
    }
    Ok(rules)
}

/// One conntrack entry: the original and the reply tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub proto: String,
    pub orig_src: IpAddr,
    pub orig_dst: IpAddr,
    pub orig_sport: u16,
    pub orig_dport: u16,
    pub reply_src: IpAddr,
    pub reply_dst: IpAddr,
    pub reply_sport: u16,
    pub reply_dport: u16,
}

impl CtEntry {
    /// DNAT happened when the reply comes from somewhere else than the original destination.
    pub fn dnat_to(&self) -> Option<(IpAddr, u16)> {
        (self.reply_src != self.orig_dst || self.reply_sport != self.orig_dport)
            .then_some((self.reply_src, self.reply_sport))
    }

    /// SNAT/MASQUERADE happened when the reply goes to somewhere else than the original source.
    pub fn snat(&self) -> bool {
        self.reply_dst != self.orig_src
    }
}

/// Parse `conntrack -L -o extended`. Lines that do not have two full tuples are skipped.
pub fn parse_conntrack(text: &str) -> Vec<CtEntry> {
    text.lines().filter_map(parse_ct_line).collect()
}

fn parse_ct_line(line: &str) -> Option<CtEntry> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let proto = (*words.get(2)?).to_owned();
    let get_all =
        |key: &str| -> Vec<&str> { words.iter().filter_map(|w| w.strip_prefix(key)).collect() };
    let (src, dst, sport, dport) = (
        get_all("src="),
        get_all("dst="),
        get_all("sport="),
        get_all("dport="),
    );
    if src.len() < 2 || dst.len() < 2 || sport.len() < 2 || dport.len() < 2 {
        return None;
    }
    Some(CtEntry {
        proto,
        orig_src: src[0].parse().ok()?,
        orig_dst: dst[0].parse().ok()?,
        orig_sport: sport[0].parse().ok()?,
        orig_dport: dport[0].parse().ok()?,
        reply_src: src[1].parse().ok()?,
        reply_dst: dst[1].parse().ok()?,
        reply_sport: sport[1].parse().ok()?,
        reply_dport: dport[1].parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from `conntrack -L -o extended` in a harness node namespace after one TCP connect
    // from the external client to a ClusterIP (DNAT + MASQUERADE) and one unanswered UDP datagram.
    const CT: &str = "\
ipv4     2 tcp      6 119 TIME_WAIT src=192.168.0.100 dst=10.96.0.10 sport=40312 dport=80 src=10.244.0.10 dst=10.244.0.1 sport=8080 dport=11877 [ASSURED] mark=0 use=1
ipv4     2 udp      17 29 src=192.168.0.100 dst=10.96.0.30 sport=5353 dport=53 [UNREPLIED] src=10.96.0.30 dst=192.168.0.100 sport=53 dport=5353 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.
";

    #[test]
    fn conntrack_tuples_show_dnat_and_masquerade() {
        let e = parse_conntrack(CT);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].dnat_to(), Some(("10.244.0.10".parse().unwrap(), 8080)));
        assert!(e[0].snat());
        assert_eq!(e[1].dnat_to(), None);
        assert!(!e[1].snat());
    }

    #[test]
    fn counted_rules_are_numbered_per_chain() {
        let text = "*nat\n:PREROUTING ACCEPT [3:180]\n[3:180] -A PREROUTING -j KUBE-SERVICES\n\
                    [0:0] -A KUBE-SERVICES -d 10.96.0.10/32 -j KUBE-SVC-X\n[1:60] -A KUBE-SERVICES -j KUBE-NODEPORTS\nCOMMIT\n";
        let r = parse_counted_rules(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[2].chain.as_str(), r[2].index, r[2].packets),
            ("KUBE-SERVICES", 2, 1)
        );
        assert_eq!(r[2].text, "-A KUBE-SERVICES -j KUBE-NODEPORTS");
        assert!(
            parse_counted_rules("*nat\n[x:0] -A A -j B\n")
                .unwrap_err()
                .contains("line 2")
        );
    }

    /// Counters grouped per chain in order; `moved` reports what grew, with DROP targets.
    #[test]
    fn moved_rules_are_the_counters_that_grew() {
        let before = "*filter\n[0:0] -A KUBE-PROXY-FIREWALL -d 1.2.3.4/32 -j DROP\n[5:300] -A KUBE-FORWARD -j ACCEPT\nCOMMIT\n*nat\n[2:120] -A PREROUTING -j KUBE-SERVICES\n[0:0] -A KUBE-FW-X -j KUBE-MARK-DROP\nCOMMIT\n";
        let after = "*filter\n[1:60] -A KUBE-PROXY-FIREWALL -d 1.2.3.4/32 -j DROP\n[5:300] -A KUBE-FORWARD -j ACCEPT\nCOMMIT\n*nat\n[3:180] -A PREROUTING -j KUBE-SERVICES\n[1:60] -A KUBE-FW-X -j KUBE-MARK-DROP\nCOMMIT\n";
        let b = group_counts(&parse_counted_rules(before).unwrap());
        let a = group_counts(&parse_counted_rules(after).unwrap());
        let m = moved(&b, &a);
        let key = |t: &str, c: &str, i| (t.to_string(), c.to_string(), i);
        assert_eq!(
            m,
            vec![
                (key("filter", "KUBE-PROXY-FIREWALL", 1), true),
                (key("nat", "KUBE-FW-X", 1), true),
                (key("nat", "PREROUTING", 1), false),
            ]
        );
        assert_eq!(moved_rules(&b, &a).len(), 3);
        assert!(moved(&a, &a).is_empty());
    }

    #[test]
    fn counters_are_stripped_from_rules_and_chains() {
        let text = "*nat\n:PREROUTING ACCEPT [3:180]\n:KUBE-SVC-X - [0:0]\n[3:180] -A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
        assert_eq!(
            strip_counters(text),
            "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The parsers take whatever the tools (or a broken tool) print without panicking.
        #[test]
        fn parsers_never_panic(text in "(?s).{0,400}") {
            let _ = parse_counted_rules(&text);
            let _ = parse_conntrack(&text);
            let _ = strip_counters(&text);
            let _ = strip_comment_lines(&text);
            let _ = crate::kernel::listen::parse_reply(&text);
        }

        /// Counters and per-chain positions survive a print → parse round trip.
        #[test]
        fn counted_rules_round_trip(rules in proptest::collection::vec((0usize..3, 0u64..1_000_000, 0u64..1_000_000), 0..30)) {
            let chains = ["A", "KUBE-SERVICES", "KUBE-SVC-X"];
            let mut text = String::from("*nat\n:A - [0:0]\n");
            for (c, p, b) in &rules {
                text.push_str(&format!("[{p}:{b}] -A {} -j RETURN\n", chains[*c]));
            }
            text.push_str("COMMIT\n");
            let parsed = parse_counted_rules(&text).unwrap();
            prop_assert_eq!(parsed.len(), rules.len());
            for (i, (r, (c, p, _))) in parsed.iter().zip(&rules).enumerate() {
                prop_assert_eq!(&r.chain, chains[*c]);
                prop_assert_eq!(r.packets, *p);
                let before = rules[..i].iter().filter(|(c2, _, _)| c2 == c).count();
                prop_assert_eq!(r.index, before + 1);
            }
            prop_assert!(!strip_counters(&text).contains("] -A"));
        }
    }
}
