//! Printing the model the way `iptables-save` prints it.

use super::view::{Args, MatchRef, RuleView, TargetRef};
use super::*;
use std::fmt::Write;

/// Quote a string argument exactly like libxtables' `xtables_save_string`: bare when it is made
/// only of `[A-Za-z0-9_-]`, otherwise in double quotes with `"`, `\` and `'` backslash-escaped.
pub fn save_string(out: &mut String, s: &str) {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    out.push(' ');
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    // Copied in runs between the characters that need a backslash (every traced rule's
    // comment comes through here; a push per character showed in traces).
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        // ASCII bytes never occur inside a multi-byte character: these are char boundaries.
        if matches!(b, b'"' | b'\\' | b'\'') {
            out.push_str(&s[start..i]);
            out.push('\\');
            start = i;
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// An address with its prefix length, as `IpNet`'s `Display` prints it (`10.0.0.1/32`), without
/// the formatter: every traced rule with `-s`/`-d` prints one.
pub(crate) fn push_net(out: &mut String, n: ipnet::IpNet) {
    crate::k8s::ip::push_ip(out, n.addr());
    out.push('/');
    out.push_str(itoa::Buffer::new().format(n.prefix_len()));
}

/// `fixed / 2^31` with `decimals` digits, as `printf("%.*f")` prints the double (libxt_statistic
/// prints `--probability` with `%.11f`). The value is a dyadic fraction, so its decimal
/// expansion is exact and the rounding is done here in integers: round half to even, as glibc
/// (and Rust's float formatting) round an exact tie. Float formatting took a third of a trace.
pub fn write_probability(out: &mut String, fixed: u32, decimals: u32) {
    let int = fixed >> 31;
    // 10^decimals from a table (a traced packet prints one probability per endpoint); larger
    // counts than kube-proxy's 10 and 11 still compute it.
    const POW10: [u128; 12] = {
        let mut t = [1u128; 12];
        let mut i = 1;
        while i < 12 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    let scale = POW10
        .get(decimals as usize)
        .copied()
        .unwrap_or_else(|| 10u128.pow(decimals));
    let num = u128::from(fixed & 0x7fff_ffff) * scale;
    let (mut q, r) = (num >> 31, num & 0x7fff_ffff);
    let half = 1u128 << 30;
    if r > half || (r == half && q & 1 == 1) {
        q += 1;
    }
    let (int, q) = if q == scale { (int + 1, 0) } else { (int, q) };
    // `{int}.{q:0w$}` without the formatter (u128 formatting was most of a traced endpoint
    // rule's text): q < 10^decimals fits a u64 for the 10 and 11 decimals used.
    let mut b = itoa::Buffer::new();
    out.push_str(b.format(int));
    out.push('.');
    let digits = b.format(q as u64);
    for _ in digits.len()..decimals as usize {
        out.push('0');
    }
    out.push_str(digits);
}

fn neg(out: &mut String, n: bool) {
    if n {
        out.push_str(" !");
    }
}

/// `{:#x}` without the formatter (`0x4000`, `0x0`): kube-proxy's mark rules are on every
/// traced packet's path.
pub(crate) fn push_hex(out: &mut String, v: u32) {
    out.push_str("0x");
    let digits = (32 - v.leading_zeros()).div_ceil(4).max(1);
    for k in (0..digits).rev() {
        let d = (v >> (k * 4)) & 0xf;
        out.push(char::from_digit(d, 16).expect("a nibble is a hex digit"));
    }
}

fn port(out: &mut String, p: PortSpec) {
    let mut b = itoa::Buffer::new();
    out.push_str(b.format(p.lo));
    if p.lo != p.hi {
        out.push(':');
        out.push_str(b.format(p.hi));
    }
}

/// Print one match (with its leading space).
pub fn print_match(out: &mut String, m: &Match) {
    write_match(out, MatchRef::from(m));
}

/// Print one match of either form (with its leading space).
pub fn write_match(out: &mut String, m: MatchRef) {
    match m {
        MatchRef::Comment(comment) => {
            out.push_str(" -m comment --comment");
            save_string(out, comment);
        }
        MatchRef::Ports {
            module,
            sport,
            dport,
        } => {
            out.push_str(" -m ");
            out.push_str(module);
            for (name, p) in [(" --sport ", sport), (" --dport ", dport)] {
                if let Some(p) = p {
                    neg(out, p.neg);
                    out.push_str(name);
                    port(out, p.value);
                }
            }
        }
        MatchRef::Multiport {
            neg: n,
            kind,
            ports,
        } => {
            out.push_str(" -m multiport");
            neg(out, n);
            out.push_str(match kind {
                MultiportKind::Sports => " --sports ",
                MultiportKind::Dports => " --dports ",
                MultiportKind::Ports => " --ports ",
            });
            for (i, p) in ports.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                port(out, *p);
            }
        }
        MatchRef::Statistic(Statistic::Random { neg: n, fixed }) => {
            out.push_str(" -m statistic --mode random");
            neg(out, n);
            // libxt_statistic prints the kernel's fixed-point value back with 11 decimals.
            out.push_str(" --probability ");
            write_probability(out, fixed, 11);
        }
        MatchRef::Statistic(Statistic::Nth {
            neg: n,
            every,
            packet,
        }) => {
            out.push_str(" -m statistic --mode nth");
            neg(out, n);
            let _ = write!(out, " --every {} --packet {}", every + 1, packet);
        }
        MatchRef::Recent(r) => {
            out.push_str(" -m recent");
            neg(out, r.neg);
            out.push_str(match r.action {
                RecentAction::Set => " --set",
                RecentAction::Rcheck => " --rcheck",
                RecentAction::Update => " --update",
                RecentAction::Remove => " --remove",
            });
            if let Some(s) = r.seconds {
                let _ = write!(out, " --seconds {s}");
            }
            if r.reap {
                out.push_str(" --reap");
            }
            if let Some(h) = r.hitcount {
                let _ = write!(out, " --hitcount {h}");
            }
            if r.rttl {
                out.push_str(" --rttl");
            }
            let _ = write!(out, " --name {} --mask {}", r.name, r.mask);
            out.push_str(if r.rdest { " --rdest" } else { " --rsource" });
        }
        MatchRef::Mark {
            neg: n,
            value,
            mask,
        } => {
            out.push_str(" -m mark");
            neg(out, n);
            out.push_str(" --mark ");
            push_hex(out, value);
            if mask != u32::MAX {
                out.push('/');
                push_hex(out, mask);
            }
        }
        MatchRef::AddrType {
            src,
            dst,
            limit_iface_in,
            limit_iface_out,
        } => {
            out.push_str(" -m addrtype");
            for (name, t) in [("--src-type", src), ("--dst-type", dst)] {
                if let Some(t) = t {
                    neg(out, t.neg);
                    let _ = write!(out, " {name} ");
                    for (i, a) in t.value.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(a.as_str());
                    }
                }
            }
            if limit_iface_in {
                out.push_str(" --limit-iface-in");
            }
            if limit_iface_out {
                out.push_str(" --limit-iface-out");
            }
        }
        MatchRef::Conntrack { ctstate } => {
            out.push_str(" -m conntrack");
            if let Some(s) = ctstate {
                neg(out, s.neg);
                out.push_str(" --ctstate ");
                for (i, st) in s.value.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(st.as_str());
                }
            }
        }
        MatchRef::Nfacct(name) => {
            // libxt_nfacct prints a double space before the name (seen from both backends).
            out.push_str(" -m nfacct --nfacct-name ");
            save_string(out, name);
        }
        MatchRef::Set { neg: n, name, dirs } => {
            out.push_str(" -m set");
            neg(out, n);
            let _ = write!(out, " --match-set {name} ");
            for (i, d) in dirs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(if *d { "src" } else { "dst" });
            }
        }
        MatchRef::Physdev(p) => {
            // physdev_save's order (libxt_physdev): is-in, in, is-out, out, is-bridged, each
            // with its own `!`; port names printed as stored (`%s`, no quoting).
            out.push_str(" -m physdev");
            let flag = |out: &mut String, f: Option<bool>, name: &str| {
                if let Some(n) = f {
                    neg(out, n);
                    out.push_str(name);
                }
            };
            let port = |out: &mut String, p: Option<Neg<&str>>, name: &str| {
                if let Some(p) = p {
                    neg(out, p.neg);
                    out.push_str(name);
                    out.push(' ');
                    out.push_str(p.value);
                }
            };
            flag(out, p.is_in, " --physdev-is-in");
            port(out, p.physdev_in, " --physdev-in");
            flag(out, p.is_out, " --physdev-is-out");
            port(out, p.physdev_out, " --physdev-out");
            flag(out, p.is_bridged, " --physdev-is-bridged");
        }
        MatchRef::Ipvs(i) => write_ipvs(out, i),
        MatchRef::Unknown { module, args } => {
            out.push_str(" -m");
            name_word(out, module);
            raw_args(out, args);
        }
    }
}

/// `-m ipvs` as libxt_ipvs's `ipvs_mt_dump` saves it (iptables 1.8.9): `[!] --ipvs` only when it
/// is the sole option, then `--vproto` as a number, `--vaddr` with the prefix left out when it is
/// the full host length (`xtables_ipmask_to_numeric` / `xtables_ip6mask_to_numeric`), `--vport`,
/// `--vdir` (never negated: REPLY is its inversion), `--vmethod`, `--vportctl`.
fn write_ipvs(out: &mut String, i: IpvsMatch) {
    out.push_str(" -m ipvs");
    if i.property_only() {
        neg(out, i.ipvs_neg);
        out.push_str(" --ipvs");
        return;
    }
    if let Some(p) = i.vproto {
        neg(out, p.neg);
        let _ = write!(out, " --vproto {}", p.value);
    }
    if let Some(a) = i.vaddr {
        neg(out, a.neg);
        let _ = write!(out, " --vaddr {}", a.value.addr());
        if a.value.prefix_len() != a.value.max_prefix_len() {
            let _ = write!(out, "/{}", a.value.prefix_len());
        }
    }
    if let Some(p) = i.vport {
        neg(out, p.neg);
        let _ = write!(out, " --vport {}", p.value);
    }
    match i.vdir {
        Some(VDir::Original) => out.push_str(" --vdir ORIGINAL"),
        Some(VDir::Reply) => out.push_str(" --vdir REPLY"),
        None => {}
    }
    if let Some(m) = i.vmethod {
        neg(out, m.neg);
        out.push_str(" --vmethod ");
        out.push_str(m.value.as_str());
    }
    if let Some(p) = i.vportctl {
        neg(out, p.neg);
        let _ = write!(out, " --vportctl {}", p.value);
    }
}

/// A module or target name we do not model, with a leading space: as loaded when it is one plain
/// word (every real one is), quoted when it would not read back as one (a quoted name with a
/// space parses, so it must print back parseable).
fn name_word(out: &mut String, name: &str) {
    if !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        out.push(' ');
        out.push_str(name);
    } else {
        save_string(out, name);
    }
}

fn raw_args(out: &mut String, args: Args) {
    for a in args.iter() {
        if a.starts_with('-') || a == "!" {
            out.push(' ');
            out.push_str(a);
        } else {
            save_string(out, a);
        }
    }
}

/// Print a target (with its leading space).
pub fn print_target(out: &mut String, t: &Target) {
    write_target(out, TargetRef::from(t));
}

/// Print a target of either form (with its leading space).
pub fn write_target(out: &mut String, t: TargetRef) {
    match t {
        TargetRef::Accept => out.push_str(" -j ACCEPT"),
        TargetRef::Drop => out.push_str(" -j DROP"),
        TargetRef::Return => out.push_str(" -j RETURN"),
        TargetRef::Jump { chain, .. } => {
            out.push_str(" -j ");
            out.push_str(chain);
        }
        TargetRef::Goto { chain, .. } => {
            out.push_str(" -g ");
            out.push_str(chain);
        }
        TargetRef::Reject { with } => {
            let _ = write!(out, " -j REJECT --reject-with {with}");
        }
        TargetRef::Dnat {
            to,
            random,
            persistent,
        } => {
            out.push_str(" -j DNAT --to-destination ");
            to.write(out);
            if random {
                out.push_str(" --random");
            }
            if persistent {
                out.push_str(" --persistent");
            }
        }
        TargetRef::Snat {
            to,
            random,
            random_fully,
            persistent,
        } => {
            out.push_str(" -j SNAT --to-source ");
            to.write(out);
            if random {
                out.push_str(" --random");
            }
            if random_fully {
                out.push_str(" --random-fully");
            }
            if persistent {
                out.push_str(" --persistent");
            }
        }
        TargetRef::Masquerade {
            to_ports,
            random,
            random_fully,
        } => {
            out.push_str(" -j MASQUERADE");
            if let Some(p) = to_ports {
                let _ = write!(out, " --to-ports {p}");
            }
            if random {
                out.push_str(" --random");
            }
            if random_fully {
                out.push_str(" --random-fully");
            }
        }
        TargetRef::Mark { value, mask } => {
            out.push_str(" -j MARK --set-xmark ");
            push_hex(out, value);
            out.push('/');
            push_hex(out, mask);
        }
        TargetRef::Log { prefix, level } => {
            out.push_str(" -j LOG");
            if let Some(p) = prefix {
                out.push_str(" --log-prefix");
                save_string(out, p);
            }
            if let Some(l) = level {
                let _ = write!(out, " --log-level {l}");
            }
        }
        TargetRef::Unknown { name, args } => {
            out.push_str(" -j");
            name_word(out, name);
            raw_args(out, args);
        }
    }
}

/// The rule's arguments after `-A CHAIN`, in iptables-save order, with a leading space.
pub fn print_rule_args<'a>(out: &mut String, r: impl RuleView<'a>) {
    if let Some(s) = r.src() {
        neg(out, s.neg);
        out.push_str(" -s ");
        push_net(out, s.value);
    }
    if let Some(d) = r.dst() {
        neg(out, d.neg);
        out.push_str(" -d ");
        push_net(out, d.value);
    }
    if let Some(i) = r.in_iface() {
        neg(out, i.neg);
        out.push_str(" -i ");
        out.push_str(i.value);
    }
    if let Some(o) = r.out_iface() {
        neg(out, o.neg);
        out.push_str(" -o ");
        out.push_str(o.value);
    }
    if let Some(p) = r.proto() {
        neg(out, p.neg);
        match p.value.name() {
            Some(n) => {
                out.push_str(" -p ");
                out.push_str(n);
            }
            None => {
                let _ = write!(out, " -p {}", p.value.0);
            }
        }
    }
    for m in r.matches() {
        write_match(out, m);
    }
    if let Some(t) = r.target() {
        write_target(out, t);
    }
}

/// One rule as `-A CHAIN ...` (what the trace shows).
pub fn rule_text<'a>(chain: &str, r: impl RuleView<'a>) -> String {
    // kube-proxy's rules with a comment run past 128 bytes; one allocation per traced rule.
    let mut s = String::with_capacity(256);
    s.push_str("-A ");
    s.push_str(chain);
    print_rule_args(&mut s, r);
    s
}

/// Chains in `iptables-save` order: built-in chains in their fixed order, then user chains sorted
/// by name (both the nft and legacy backends list them sorted).
pub fn chain_order(table: &Table) -> Vec<&Chain> {
    let builtins = builtin_chains(&table.name);
    let mut out: Vec<&Chain> = builtins.iter().filter_map(|b| table.chain(b)).collect();
    let mut users: Vec<&Chain> = table
        .chains
        .iter()
        .filter(|c| !builtins.contains(&c.name.as_str()))
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(users);
    out
}

/// Print a ruleset as `iptables-save` (without the `#` header lines). `counters` adds the
/// `[p:b]` rule prefix of `iptables-save -c`.
pub fn print_saved(rs: &Ruleset, counters: bool) -> String {
    let mut out = String::with_capacity(rs.rule_count() * 128 + 256);
    for t in &rs.tables {
        let _ = writeln!(out, "*{}", t.name);
        let chains = chain_order(t);
        for c in &chains {
            let _ = writeln!(
                out,
                ":{} {} [{}:{}]",
                c.name,
                c.policy.as_deref().unwrap_or("-"),
                c.counters.packets,
                c.counters.bytes
            );
        }
        for c in &chains {
            for r in &c.rules {
                if counters {
                    let rc = r.counters.unwrap_or_default();
                    let _ = write!(out, "[{}:{}] ", rc.packets, rc.bytes);
                }
                out.push_str("-A ");
                out.push_str(&c.name);
                print_rule_args(&mut out, r);
                out.push('\n');
            }
        }
        for d in &t.deleted {
            let _ = writeln!(out, "-X {d}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer rounding must print what `printf("%.11f")` prints for the double; Rust's
    /// float formatting rounds the exact binary value the same way (half to even), so it is the
    /// reference here. Exact ties happen only for odd multiples of 2^19 (fixed * 10^11 / 2^31
    /// has remainder 2^30): all 4,096 of them, plus values around the ends and kube-proxy's own.
    #[test]
    fn probability_text_matches_float_formatting() {
        let mut vals: Vec<u32> = (0..4096u32).map(|k| (2 * k + 1) << 19).collect();
        vals.extend(0..5000);
        vals.extend((1u32 << 31) - 5000..=(1u32 << 31) + 5000);
        vals.extend(u32::MAX - 5000..=u32::MAX);
        vals.extend((2..=200u32).map(|n| Statistic::fixed_from_probability(1.0 / n as f64)));
        for f in vals {
            for d in [10, 11] {
                let mut got = String::new();
                write_probability(&mut got, f, d);
                let want = format!("{:.*}", d as usize, Statistic::probability_of(f));
                assert_eq!(got, want, "fixed {f}, {d} decimals");
            }
        }
        // kube-proxy's 1/7 as the kernel's iptables-save printed it back
        // (tests/fixtures/kernel: `--probability 0.14285714272`).
        let mut s = String::new();
        write_probability(&mut s, Statistic::fixed_from_probability(1.0 / 7.0), 11);
        assert_eq!(s, "0.14285714272");
    }

    /// The formatter-free helpers print exactly what `Display` / `{:#x}` print: the formatter
    /// is the reference (the rules' text is compared with real iptables-save elsewhere).
    #[test]
    fn fast_number_and_address_text_match_the_formatter() {
        let mut vals: Vec<u32> = (0..=0x1_0000).collect();
        vals.extend((0..32).map(|k| 1u32 << k));
        vals.extend((0..32).map(|k| (1u32 << k) - 1));
        vals.extend([0x4000, 0x8000, u32::MAX, 0xdead_beef]);
        for v in vals {
            let mut got = String::new();
            push_hex(&mut got, v);
            assert_eq!(got, format!("{v:#x}"));
        }
        for n in [
            "10.96.0.1/32",
            "0.0.0.0/0",
            "255.255.255.255/8",
            "10.128.0.0/9",
            "2001:db8::1/128",
            "::/0",
            "fd00::ffff:0:0/96",
        ] {
            let net: ipnet::IpNet = n.parse().expect("literal");
            let mut got = String::new();
            push_net(&mut got, net);
            assert_eq!(got, net.to_string());
        }
        for (lo, hi) in [(0, 0), (80, 80), (1024, 65535), (65535, 65535)] {
            let mut got = String::new();
            port(&mut got, PortSpec { lo, hi });
            let want = if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo}:{hi}")
            };
            assert_eq!(got, want);
        }
        let mut got = String::new();
        save_string(&mut got, r#"a "b" \c 'd'"#);
        assert_eq!(got, r#" "a \"b\" \\c \'d\'""#);
    }
}
