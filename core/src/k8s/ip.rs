//! IP parsing the way Kubernetes does it.
//!
//! kube-proxy parses API addresses with `netutils.ParseIPSloppy` / `ParseCIDRSloppy`, which accept
//! legacy IPv4 forms with leading zeros as *decimal* (`172.30.0.041` is 172.30.0.41), and prints
//! them back normalised. Rust's std parser rejects those forms, so this module reproduces Go's.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// Parse an IP like Go's `ParseIPSloppy` (leading zeros in IPv4 octets are decimal).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    // A 10k-Service sync parses 100k endpoint addresses; std's parser was 5% of it.
    if let Some(a) = parse_dotted_quad(s.as_bytes()) {
        return Some(IpAddr::V4(a));
    }
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if s.contains(':') {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        octets[n] = part.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
        n += 1;
    }
    (n == 4).then(|| IpAddr::V4(Ipv4Addr::from(octets)))
}

/// `a.b.c.d`, each 1-3 digits and at most 255: read the same way by std's parser and by the
/// sloppy fallback (leading zeros as decimal), so either path gives this result.
fn parse_dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, o) in octets.iter_mut().enumerate() {
        if n > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while i < s.len() && i - start < 3 && s[i].is_ascii_digit() {
            v = v * 10 + u16::from(s[i] - b'0');
            i += 1;
        }
        if i == start || v > 255 {
            return None;
        }
        *o = v as u8;
    }
    (i == s.len()).then(|| Ipv4Addr::from(octets))
}

/// Parse a CIDR like Go's `ParseCIDRSloppy`; the result is the network (host bits cleared), as
/// kube-proxy prints `ipNet.String()`.
pub fn parse_cidr_sloppy(s: &str) -> Option<IpNet> {
    let s = s.trim();
    let (a, p) = s.split_once('/')?;
    let addr = parse_ip_sloppy(a)?;
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = p.parse().ok()?;
    IpNet::new(addr, prefix).ok().map(|n| n.trunc())
}

/// Append an address as its `Display` prints it. A traced packet formats a few dozen addresses
/// (outcomes, NAT steps, notes) and a 10k-Service sync 200k.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            // Digit by digit: a stack buffer needed `str::from_utf8` to append (~80 instructions).
            out.reserve(15);
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if o >= 100 {
                    out.push(char::from(b'0' + o / 100));
                }
                if o >= 10 {
                    out.push(char::from(b'0' + o / 10 % 10));
                }
                out.push(char::from(b'0' + o % 10));
            }
        }
        IpAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(out, "{a}");
        }
    }
}

/// `ip:port` for IPv4, `[ip]:port` for IPv6 (Go's `net.JoinHostPort`).
pub fn join_host_port(ip: IpAddr, port: u16) -> String {
    let mut s = String::with_capacity(if ip.is_ipv4() { 21 } else { 47 });
    push_host_port(&mut s, ip, port);
    s
}

/// [`join_host_port`], appended to `out`.
pub fn push_host_port(out: &mut String, ip: IpAddr, port: u16) {
    if ip.is_ipv6() {
        out.push('[');
    }
    push_ip(out, ip);
    out.push_str(if ip.is_ipv6() { "]:" } else { ":" });
    out.push_str(itoa::Buffer::new().format(port));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_leading_zeros_are_decimal() {
        // Values from kube-proxy's TestOverallIPTablesRules-era fixtures (spec §6).
        assert_eq!(
            parse_ip_sloppy("172.30.0.041").unwrap().to_string(),
            "172.30.0.41"
        );
        assert_eq!(
            parse_ip_sloppy("10.180.00.001").unwrap().to_string(),
            "10.180.0.1"
        );
        assert_eq!(
            parse_cidr_sloppy("203.0.113.000/025").unwrap().to_string(),
            "203.0.113.0/25"
        );
        assert!(parse_ip_sloppy("1.2.3.256").is_none());
        // The dotted-quad fast path against the general one.
        for t in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "010.0.0.1",
            "1.2.3.0004",
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4.5",
            " 1.2.3.4 ",
            "1.2.3.4:80",
            "256.1.1.1",
            "1.2.3.4a",
            "",
        ] {
            let general = || {
                let t = t.trim();
                t.parse::<IpAddr>().ok().or_else(|| {
                    let parts: Vec<&str> = t.split('.').collect();
                    (parts.len() == 4
                        && parts.iter().all(|p| {
                            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
                        }))
                    .then(|| {
                        parts
                            .iter()
                            .map(|p| p.parse::<u16>().unwrap())
                            .collect::<Vec<_>>()
                    })
                    .filter(|o| o.iter().all(|v| *v <= 255))
                    .map(|o| IpAddr::from([o[0] as u8, o[1] as u8, o[2] as u8, o[3] as u8]))
                })
            };
            assert_eq!(parse_ip_sloppy(t), general(), "{t:?}");
        }
        assert!(parse_ip_sloppy("1.2.3").is_none());
        assert!(parse_cidr_sloppy("10.0.0.0/33").is_none());
        assert_eq!(
            join_host_port("fd00::1".parse().unwrap(), 80),
            "[fd00::1]:80"
        );
    }

    #[test]
    fn join_host_port_prints_like_display() {
        // The reference is std's Display (Go prints the same forms).
        for (ip, port) in [
            ("0.0.0.0", 0u16),
            ("10.180.0.1", 80),
            ("255.255.255.255", 65535),
            ("192.168.0.10", 30080),
            ("2001:db8::1", 443),
            ("::ffff:10.0.0.1", 8080),
        ] {
            let a: IpAddr = ip.parse().unwrap();
            let want = match a {
                IpAddr::V4(_) => format!("{a}:{port}"),
                IpAddr::V6(_) => format!("[{a}]:{port}"),
            };
            assert_eq!(join_host_port(a, port), want);
        }
        for v in (0u32..=u32::MAX).step_by(16_777_259) {
            let a = IpAddr::V4(Ipv4Addr::from(v));
            let mut s = String::new();
            push_ip(&mut s, a);
            assert_eq!(s, a.to_string());
        }
        // Every octet value in every position (1-, 2- and 3-digit forms).
        for o in 0..=255u8 {
            let a = IpAddr::V4(Ipv4Addr::new(o, o.wrapping_add(85), o ^ 0xa5, 255 - o));
            let mut s = String::new();
            push_ip(&mut s, a);
            assert_eq!(s, a.to_string());
        }
    }
}
