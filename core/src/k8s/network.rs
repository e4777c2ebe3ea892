//! proxyscope's own `NodeNetwork` document: what the API does not say about the node itself.
//!
//! ```yaml
//! apiVersion: proxyscope.dev/v1alpha1
//! kind: NodeNetwork
//! metadata: {name: test-node}
//! interfaces:                 # what `ip addr` shows: interface -> addresses with prefix
//!   lo: [127.0.0.1/8, ::1/128]
//!   eth0: [192.168.0.2/24, 2001:db8::1/64]
//! bridges:                    # Linux bridges: bridge -> its ports (what `ip link` shows as master)
//!   cni0: [veth0]             # local Pods' packets come in on the bridge's first port
//! features:                   # what this node's iptables/kernel support (kube-proxy probes these)
//!   randomFully: true         # MASQUERADE --random-fully
//!   nfacct: true              # nfacct counters
//!   brNetfilter: true         # br_netfilter loaded, net.bridge.bridge-nf-call-ip(6)tables=1
//! ```
//!
//! Without `bridges` the node has the bridge CNI plugin's (and flannel's) layout: bridge `cni0`
//! with the Pods' veth ports, `veth0` standing for the port of the Pod a packet comes from.
//! `brNetfilter` defaults to on, as kubeadm's preflight check requires
//! (`/proc/sys/net/bridge/bridge-nf-call-iptables` = 1). Together they decide what
//! `-m physdev` sees: a packet that comes in on a bridge with br_netfilter on carries its port
//! (`--physdev-is-in` true); anything else carries no bridge info.

use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeNetwork {
    /// Interfaces in document order (kube-proxy walks them in this order for nodePortAddresses).
    pub interfaces: Vec<(String, Vec<IpNet>)>,
    /// `MASQUERADE --random-fully` is supported (kube-proxy probes the iptables version).
    pub random_fully: bool,
    /// nfacct counters could be created.
    pub nfacct: bool,
    /// Bridges and their ports, in document order.
    pub bridges: Vec<(String, Vec<String>)>,
    /// br_netfilter is loaded and passes bridged IP traffic to iptables
    /// (`net.bridge.bridge-nf-call-iptables` / `-ip6tables` = 1).
    pub br_netfilter: bool,
}

/// The bridge layout of a node without a `bridges` field (bridge CNI plugin, flannel).
pub fn default_bridges() -> Vec<(String, Vec<String>)> {
    vec![("cni0".into(), vec!["veth0".into()])]
}

impl NodeNetwork {
    /// Without a NodeNetwork document: loopback plus the Node's `status.addresses` (as /32, /128
    /// on `eth0`), both features on.
    pub fn from_addresses(addrs: &[IpAddr]) -> NodeNetwork {
        let lo = vec![
            "127.0.0.1/8".parse().expect("literal"),
            "::1/128".parse().expect("literal"),
        ];
        let eth0 = addrs.iter().map(|a| IpNet::from(*a)).collect();
        NodeNetwork {
            interfaces: vec![("lo".into(), lo), ("eth0".into(), eth0)],
            random_fully: true,
            nfacct: true,
            bridges: default_bridges(),
            br_netfilter: true,
        }
    }

    /// The bridge port (br_netfilter's `physindev`) a packet arriving on interface `iface` is
    /// seen to come in by: the first port of that bridge, when br_netfilter is on. `None`: the
    /// packet carries no bridge info (`iface` is no bridge, has no port, or br_netfilter is off).
    pub fn bridge_port(&self, iface: &str) -> Option<&str> {
        if !self.br_netfilter {
            return None;
        }
        self.bridges
            .iter()
            .find(|(b, _)| b == iface)
            .and_then(|(_, ports)| ports.first())
            .map(String::as_str)
    }

    /// Every address on every interface.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.interfaces
            .iter()
            .flat_map(|(_, a)| a.iter().map(|n| n.addr()))
            .collect()
    }

    /// Is `ip` an address of this node (the kernel's RTN_LOCAL, what `addrtype LOCAL` tests)?
    /// The whole 127.0.0.0/8 is local on Linux (the `local` route table entry for lo).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        if let IpAddr::V4(a) = ip
            && a.octets()[0] == 127
            && self
                .interfaces
                .iter()
                .any(|(_, v)| v.iter().any(|n| n.contains(&ip) && n.addr().is_loopback()))
        {
            return true;
        }
        self.interfaces
            .iter()
            .any(|(_, v)| v.iter().any(|n| n.addr() == ip))
    }

    /// The interface an address belongs to.
    pub fn interface_of(&self, ip: IpAddr) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|(_, v)| v.iter().any(|n| n.addr() == ip))
            .map(|(n, _)| n.as_str())
    }
}
