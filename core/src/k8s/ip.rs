//! IP parsing the way Kubernetes does it.
//!
//! kube-proxy parses API addresses with `netutils.ParseIPSloppy` / `ParseCIDRSloppy`, which accept
//! legacy IPv4 forms with leading zeros as *decimal* (`172.30.0.041` is 172.30.0.41), and prints
//! them back normalised. Rust's std parser rejects those forms, so this module reproduces Go's.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// Parse an IP like Go's `ParseIPSloppy` (leading zeros in IPv4 octets are decimal).
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
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
/// (outcomes, NAT steps, notes) and a 10k-Service sync 300k; IPv4 is built on the stack and
/// appended once (per-octet `itoa` + `push` cost ~500 instructions an address).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            // "255.255.255.255" is the longest.
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            out.push_str(std::str::from_utf8(&buf[..n]).expect("ASCII digits"));
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
