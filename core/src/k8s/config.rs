//! `kubeproxy.config.k8s.io/v1alpha1` KubeProxyConfiguration, with kube-proxy's defaults.

use super::ip::parse_cidr_sloppy;
use crate::diag::Diagnostic;
use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    Ipvs,
    Nftables,
}

/// How kube-proxy tells pod traffic from everything else (`--detect-local-mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DetectLocal {
    /// No detector (e.g. ClusterCIDR mode without a clusterCIDR for the family).
    None,
    /// `ClusterCIDR` / `NodeCIDR`: by source CIDR (one per family).
    Cidr(Vec<IpNet>),
    /// `BridgeInterface`: by input interface.
    Bridge(String),
    /// `InterfaceNamePrefix`: by input interface prefix (iptables `prefix+`).
    InterfacePrefix(String),
}

impl DetectLocal {
    /// The match arguments that select pod traffic (kube-proxy's `IfLocal()`), None without a
    /// detector.
    pub fn if_local(&self) -> Option<String> {
        match self {
            DetectLocal::None => None,
            DetectLocal::Cidr(c) => c.first().map(|c| format!("-s {c}")),
            DetectLocal::Bridge(b) => Some(format!("-i {b}")),
            DetectLocal::InterfacePrefix(p) => Some(format!("-i {p}+")),
        }
    }

    /// The negation (`IfNotLocal()`): traffic that does not come from a pod.
    pub fn if_not_local(&self) -> Option<String> {
        self.if_local().map(|a| format!("! {a}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IpvsConfig {
    /// `ipvs.scheduler`; empty means kube-proxy's default, rr.
    pub scheduler: String,
    pub exclude_cidrs: Vec<IpNet>,
    pub strict_arp: bool,
    /// Seconds; 0 = leave the kernel's (900 / 120 / 300).
    pub tcp_timeout: u32,
    pub tcp_fin_timeout: u32,
    pub udp_timeout: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyConfig {
    pub mode: ProxyMode,
    /// `clusterCIDR`, split on commas (one per family for dual-stack).
    pub cluster_cidrs: Vec<IpNet>,
    /// `detectLocalMode` as written (default `ClusterCIDR`).
    pub detect_local_mode: String,
    pub bridge_interface: String,
    pub interface_name_prefix: String,
    /// `nodePortAddresses`: CIDRs and/or the special value `primary`.
    pub node_port_addresses: Vec<String>,
    pub hostname_override: String,
    pub masquerade_all: bool,
    pub masquerade_bit: u32,
    pub localhost_node_ports: bool,
    /// `conntrack.tcpBeLiberal`: kube-proxy then skips the `ctstate INVALID` drop rule.
    pub tcp_be_liberal: bool,
    pub ipvs: IpvsConfig,
    pub nftables_masquerade_all: bool,
    pub nftables_masquerade_bit: u32,
    pub feature_gates: Vec<(String, bool)>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: ProxyMode::Iptables,
            cluster_cidrs: Vec::new(),
            detect_local_mode: "ClusterCIDR".into(),
            bridge_interface: String::new(),
            interface_name_prefix: String::new(),
            node_port_addresses: Vec::new(),
            hostname_override: String::new(),
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_node_ports: true,
            tcp_be_liberal: false,
            ipvs: IpvsConfig {
                scheduler: String::new(),
                exclude_cidrs: Vec::new(),
                strict_arp: false,
                tcp_timeout: 0,
                tcp_fin_timeout: 0,
                udp_timeout: 0,
            },
            nftables_masquerade_all: false,
            nftables_masquerade_bit: 14,
            feature_gates: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// The masquerade mark, `1 << masqueradeBit`.
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << self.masquerade_bit
    }

    /// The local-traffic detector for one family, as kube-proxy builds it from the config and the
    /// node's pod CIDRs.
    pub fn detect_local(&self, v6: bool, node_pod_cidrs: &[IpNet]) -> DetectLocal {
        let of_family = |v: &[IpNet]| -> Vec<IpNet> {
            v.iter()
                .filter(|c| matches!(c, IpNet::V6(_)) == v6)
                .copied()
                .take(1)
                .collect()
        };
        match self.detect_local_mode.as_str() {
            "" | "ClusterCIDR" => {
                let c = of_family(&self.cluster_cidrs);
                if c.is_empty() {
                    DetectLocal::None
                } else {
                    DetectLocal::Cidr(c)
                }
            }
            "NodeCIDR" => {
                let c = of_family(node_pod_cidrs);
                if c.is_empty() {
                    DetectLocal::None
                } else {
                    DetectLocal::Cidr(c)
                }
            }
            "BridgeInterface" => DetectLocal::Bridge(self.bridge_interface.clone()),
            "InterfaceNamePrefix" => {
                DetectLocal::InterfacePrefix(self.interface_name_prefix.clone())
            }
            _ => DetectLocal::None,
        }
    }
}

/// Keys kube-proxy reads that cannot change what proxyscope shows (reported once as a warning
/// when present, never silently).
const NO_EFFECT: &[&str] = &[
    "bindAddress",
    "healthzBindAddress",
    "metricsBindAddress",
    "bindAddressHardFail",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "clientConnection",
    "logging",
    "oomScoreAdj",
    "configSyncPeriod",
    "portRange",
    "winkernel",
    "windowsRunAsService",
    "ipFamily",
];

pub(crate) struct Reader<'a> {
    pub doc: usize,
    pub line_of: &'a dyn Fn(&str) -> Option<usize>,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn loc(&self, field: &str) -> String {
        format!(
            "document {} (KubeProxyConfiguration), field {field}",
            self.doc
        )
    }
    /// The YAML key a field path ends in: `iptables.masqueradeAll` → `masqueradeAll`,
    /// `nodePortAddresses[1]` → `nodePortAddresses` (list items have no key of their own).
    fn last_key(field: &str) -> &str {
        let key = field.rsplit('.').next().unwrap_or(field);
        key.split('[').next().unwrap_or(key)
    }
    pub fn error(&mut self, field: &str, msg: impl Into<String>) {
        let line = (self.line_of)(Self::last_key(field));
        let loc = self.loc(field);
        self.diags.push(Diagnostic::error(line, loc, msg));
    }
    pub fn warn(&mut self, field: &str, msg: impl Into<String>) {
        let line = (self.line_of)(Self::last_key(field));
        let loc = self.loc(field);
        self.diags.push(Diagnostic::warning(line, loc, msg));
    }
    fn string(&mut self, v: &Value, field: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => Some(String::new()),
            _ => {
                self.error(field, format!("expected a string, got {v}"));
                None
            }
        }
    }
    fn boolean(&mut self, v: &Value, field: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            _ => {
                self.error(field, format!("expected true or false, got {v}"));
                None
            }
        }
    }
    fn int(&mut self, v: &Value, field: &str, lo: i64, hi: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            Some(n) => {
                self.error(field, format!("{n} is out of range {lo}..{hi}"));
                None
            }
            None if v.is_null() => None,
            None => {
                self.error(field, format!("expected an integer, got {v}"));
                None
            }
        }
    }
    /// Durations are Go duration strings (`900s`, `15m`, `1h0m0s`); returns whole seconds.
    fn duration(&mut self, v: &Value, field: &str) -> Option<u32> {
        let s = self.string(v, field)?;
        if s.is_empty() {
            return Some(0);
        }
        match parse_go_duration(&s) {
            Some(d) => Some(d),
            None => {
                self.error(field, format!("`{s}` is not a duration like 900s or 15m"));
                None
            }
        }
    }
}

/// Whole seconds of a Go duration string (`1h2m3s`, `900s`, `0`).
pub fn parse_go_duration(s: &str) -> Option<u32> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().ok()?;
        num.clear();
        total += v * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        any = true;
    }
    (any && num.is_empty() && total <= u32::MAX as f64).then_some(total as u32)
}

/// Read a KubeProxyConfiguration document.
pub(crate) fn read(obj: &serde_json::Map<String, Value>, r: &mut Reader) -> ProxyConfig {
    let mut c = ProxyConfig::default();
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            "mode" => {
                if let Some(m) = r.string(v, "mode") {
                    c.mode = match m.as_str() {
                        "" | "iptables" => ProxyMode::Iptables,
                        "ipvs" => ProxyMode::Ipvs,
                        "nftables" => ProxyMode::Nftables,
                        other => {
                            r.error(
                                "mode",
                                format!("unknown mode `{other}` (iptables, ipvs or nftables)"),
                            );
                            ProxyMode::Iptables
                        }
                    }
                }
            }
            "clusterCIDR" => {
                if let Some(s) = r.string(v, "clusterCIDR") {
                    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        match parse_cidr_sloppy(part) {
                            Some(n) => c.cluster_cidrs.push(n),
                            None => r.error("clusterCIDR", format!("`{part}` is not a CIDR")),
                        }
                    }
                }
            }
            "detectLocalMode" => {
                if let Some(m) = r.string(v, "detectLocalMode") {
                    if !matches!(
                        m.as_str(),
                        "" | "ClusterCIDR" | "NodeCIDR" | "BridgeInterface" | "InterfaceNamePrefix"
                    ) {
                        r.error(
                            "detectLocalMode",
                            format!("unknown mode `{m}` (ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix)"),
                        );
                    } else if !m.is_empty() {
                        c.detect_local_mode = m;
                    }
                }
            }
            "detectLocal" => {
                let Some(o) = v.as_object() else {
                    r.error("detectLocal", "expected an object");
                    continue;
                };
                for (k2, v2) in o {
                    match k2.as_str() {
                        "bridgeInterface" => {
                            c.bridge_interface = r
                                .string(v2, "detectLocal.bridgeInterface")
                                .unwrap_or_default()
                        }
                        "interfaceNamePrefix" => {
                            c.interface_name_prefix = r
                                .string(v2, "detectLocal.interfaceNamePrefix")
                                .unwrap_or_default()
                        }
                        other => r.warn(&format!("detectLocal.{other}"), "unknown field: ignored"),
                    }
                }
            }
            "nodePortAddresses" => match v {
                Value::Array(a) => {
                    for (i, item) in a.iter().enumerate() {
                        let f = format!("nodePortAddresses[{i}]");
                        if let Some(s) = r.string(item, &f) {
                            if s != "primary" && parse_cidr_sloppy(&s).is_none() {
                                r.error(&f, format!("`{s}` is neither a CIDR nor `primary`"));
                            } else {
                                c.node_port_addresses.push(s);
                            }
                        }
                    }
                }
                Value::Null => {}
                _ => r.error("nodePortAddresses", "expected a list of CIDRs"),
            },
            "hostnameOverride" => {
                c.hostname_override = r.string(v, "hostnameOverride").unwrap_or_default()
            }
            "iptables" | "nftables" => {
                let Some(o) = v.as_object() else {
                    r.error(k, "expected an object");
                    continue;
                };
                let ipt = k == "iptables";
                for (k2, v2) in o {
                    let f = format!("{k}.{k2}");
                    match k2.as_str() {
                        "masqueradeAll" => {
                            if let Some(b) = r.boolean(v2, &f) {
                                if ipt {
                                    c.masquerade_all = b
                                } else {
                                    c.nftables_masquerade_all = b
                                }
                            }
                        }
                        "masqueradeBit" => {
                            if let Some(n) = r.int(v2, &f, 0, 31) {
                                if ipt {
                                    c.masquerade_bit = n as u32
                                } else {
                                    c.nftables_masquerade_bit = n as u32
                                }
                            }
                        }
                        "localhostNodePorts" if ipt => {
                            if let Some(b) = r.boolean(v2, &f) {
                                c.localhost_node_ports = b;
                            }
                        }
                        "syncPeriod" | "minSyncPeriod" => {
                            let _ = r.duration(v2, &f);
                            r.warn(
                                &f,
                                "sync timing is not modelled (proxyscope shows one full sync)",
                            );
                        }
                        other => r.warn(&f, format!("unknown field `{other}`: ignored")),
                    }
                }
            }
            "ipvs" => {
                let Some(o) = v.as_object() else {
                    r.error("ipvs", "expected an object");
                    continue;
                };
                for (k2, v2) in o {
                    let f = format!("ipvs.{k2}");
                    match k2.as_str() {
                        "scheduler" => c.ipvs.scheduler = r.string(v2, &f).unwrap_or_default(),
                        "excludeCIDRs" => {
                            for (i, item) in v2.as_array().into_iter().flatten().enumerate() {
                                let fi = format!("{f}[{i}]");
                                match r.string(item, &fi).as_deref().and_then(parse_cidr_sloppy) {
                                    Some(n) => c.ipvs.exclude_cidrs.push(n),
                                    None => r.error(&fi, "not a CIDR"),
                                }
                            }
                        }
                        "strictARP" => c.ipvs.strict_arp = r.boolean(v2, &f).unwrap_or(false),
                        "tcpTimeout" => c.ipvs.tcp_timeout = r.duration(v2, &f).unwrap_or(0),
                        "tcpFinTimeout" => c.ipvs.tcp_fin_timeout = r.duration(v2, &f).unwrap_or(0),
                        "udpTimeout" => c.ipvs.udp_timeout = r.duration(v2, &f).unwrap_or(0),
                        "syncPeriod" | "minSyncPeriod" => {
                            let _ = r.duration(v2, &f);
                            r.warn(
                                &f,
                                "sync timing is not modelled (proxyscope shows one full sync)",
                            );
                        }
                        other => r.warn(&f, format!("unknown field `{other}`: ignored")),
                    }
                }
            }
            "conntrack" => {
                let Some(o) = v.as_object() else {
                    r.error("conntrack", "expected an object");
                    continue;
                };
                for (k2, v2) in o {
                    let f = format!("conntrack.{k2}");
                    match k2.as_str() {
                        "tcpBeLiberal" => c.tcp_be_liberal = r.boolean(v2, &f).unwrap_or(false),
                        _ => r.warn(&f, "conntrack table sizing and timeouts are not modelled"),
                    }
                }
            }
            "featureGates" => {
                for (g, val) in v.as_object().into_iter().flatten() {
                    let f = format!("featureGates.{g}");
                    if let Some(b) = r.boolean(val, &f) {
                        c.feature_gates.push((g.clone(), b));
                        r.warn(&f, "feature gates are not modelled: proxyscope follows the defaults of kube-proxy v1.33");
                    }
                }
            }
            "syncPeriod" | "minSyncPeriod" => {
                r.warn(
                    k,
                    "sync timing is not modelled (proxyscope shows one full sync)",
                );
            }
            other if NO_EFFECT.contains(&other) => {
                r.warn(
                    other,
                    "has no effect on the rules or packet paths proxyscope shows",
                );
            }
            other => r.warn(other, format!("unknown field `{other}`: ignored")),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;
    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("900s"), Some(900));
        assert_eq!(parse_go_duration("15m"), Some(900));
        assert_eq!(parse_go_duration("1h0m0s"), Some(3600));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("10x"), None);
        assert_eq!(parse_go_duration("10"), None);
    }
}
