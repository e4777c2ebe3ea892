//! Kubernetes objects in, a validated [`Scenario`] out.
//!
//! A scenario is what `kubectl get -o yaml` prints (multi-document YAML, JSON, or a `kind: List`)
//! of: KubeProxyConfiguration, Node, Service, EndpointSlice, ServiceCIDR, and proxyscope's own
//! NodeNetwork. Services, EndpointSlices and Nodes are read with the real API types
//! (`k8s-openapi`); anything in the input those types do not know, or that the simulator does not
//! model, becomes a warning — nothing the user gave is dropped silently.

pub mod config;
pub mod ip;
mod load;
pub mod network;

pub use config::{DetectLocal, ProxyConfig, ProxyMode};
pub use load::load;
pub use network::NodeNetwork;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::net::IpAddr;

/// Everything kube-proxy on one node knows, validated.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub config: ProxyConfig,
    /// This node's name (what kube-proxy compares `endpoints[].nodeName` with).
    pub node_name: String,
    pub node: Option<Node>,
    /// The node's interfaces and kernel features.
    pub network: NodeNetwork,
    /// Sorted by namespace/name (kube-proxy's own order is a Go map walk; see proxier docs).
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// From `networking.k8s.io/v1` ServiceCIDR objects (used by nftables mode; reported otherwise).
    pub service_cidrs: Vec<IpNet>,
}

impl Scenario {
    /// Pod CIDRs of this node (`spec.podCIDRs`, falling back to `spec.podCIDR`).
    pub fn node_pod_cidrs(&self) -> Vec<IpNet> {
        let Some(spec) = self.node.as_ref().and_then(|n| n.spec.as_ref()) else {
            return Vec::new();
        };
        let mut v: Vec<IpNet> = spec
            .pod_cidrs
            .iter()
            .flatten()
            .filter_map(|c| ip::parse_cidr_sloppy(c))
            .collect();
        if v.is_empty()
            && let Some(c) = spec.pod_cidr.as_deref().and_then(ip::parse_cidr_sloppy)
        {
            v.push(c);
        }
        v
    }

    /// Every address local to the node (what `-m addrtype --src-type/--dst-type LOCAL` matches).
    pub fn local_addresses(&self) -> Vec<IpAddr> {
        self.network.addresses()
    }

    /// The node's primary IP of a family: kube-proxy's `nodeIP` (first InternalIP of the Node,
    /// else the first non-loopback interface address).
    pub fn node_ip(&self, v6: bool) -> Option<IpAddr> {
        let from_node = self
            .node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addrs| {
                let mut internal = addrs.iter().filter(|a| a.type_ == "InternalIP");
                let mut any = addrs.iter();
                let pick = |a: &k8s_openapi::api::core::v1::NodeAddress| {
                    ip::parse_ip_sloppy(&a.address).filter(|ip| ip.is_ipv6() == v6)
                };
                internal.find_map(pick).or_else(|| any.find_map(pick))
            });
        from_node.or_else(|| {
            self.network
                .interfaces
                .iter()
                .flat_map(|(_, a)| a.iter())
                .map(|n| n.addr())
                .find(|a| a.is_ipv6() == v6 && !a.is_loopback())
        })
    }
}

/// The result of loading a scenario: the scenario and the warnings about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    pub warnings: Vec<crate::diag::Diagnostic>,
}
