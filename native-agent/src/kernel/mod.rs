//! Real-kernel differential harness for kube-proxy's iptables mode.
//!
//! Builds a node out of network namespaces ([`world`]), loads rules with the real
//! `iptables-restore` ([`netfilter`]), sends real TCP connects and UDP datagrams from several
//! vantage points ([`probe`]) to backends that say who they are ([`listen`]), and reads back
//! what the kernel did: which backend answered, conntrack's NAT tuples, per-rule counters.
//!
//! Architecture invariant: only namespaces named `psk-<pid>-…` that this process created are
//! touched; every command runs inside one of them (`ip netns exec` / `ip -n`), never in the
//! host's namespace. All OS access goes through [`sys`].

pub mod diff;
pub mod listen;
pub mod netfilter;
pub mod probe;
pub mod sys;
pub mod world;

#[cfg(test)]
mod tests;
