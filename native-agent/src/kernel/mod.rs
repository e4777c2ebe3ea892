//! Real-kernel differential harness for kube-proxy's iptables mode.
//!
//! Builds a node out of network namespaces ([`world`]), loads rules with the real
//! `iptables-restore` ([`netfilter`]), sends real TCP connects and UDP datagrams from several
//! vantage points ([`probe`]) to backends that say who they are ([`listen`]), and reads back
//! what the kernel did: which backend answered, conntrack's NAT tuples, per-rule counters
//! (over nfnetlink, [`nl`], for iptables-nft; `iptables-legacy-save -c` for legacy).
//!
//! Architecture invariant: only namespaces named `psk-<pid>-…` that this process created are
//! touched; every command and socket runs inside one of them (`ip -n`, or a thread that entered
//! the namespace and the processes it spawns), never in the host's namespace. All OS access goes through [`sys`]. Namespaces are deleted by RAII guards
//! on every exit path (panics included); namespaces of dead harness processes are removed when
//! the next [`world::World`] is built.
//!
//! [`diff`] is the differential suite on top: core's payload → `iptables-restore` →
//! `iptables-save` must equal core's saved text; then every (client, Service address) flow is
//! sent for real and compared with core's trace (verdict, DNAT target among the predicted
//! outcomes, masquerade decision from conntrack, matched rules from per-rule counters), plus a
//! chi-square test of the random split and a `-m recent` stickiness/expiry test.
//!
//! Running it (root, network namespaces; tools: iptables (nft), ip, conntrack, nfacct):
//!
//! ```text
//! proxyscope verify-kernel --mode iptables --seeds 20           # examples + 20 random seeds
//! proxyscope verify-kernel --mode iptables --seeds 200 --jobs 8 # parallel worlds
//! cargo test -p proxyscope --bin proxyscope kernel              # harness self-tests
//! cargo test -p proxyscope --test kernel_verify                 # the suite: 200 seeds (nft)
//!                                                               # + 20 seeds (legacy)
//! PROXYSCOPE_KERNEL_SEEDS=20 PROXYSCOPE_KERNEL_LEGACY_SEEDS=2 cargo test -p proxyscope --test kernel_verify
//! cargo test -p proxyscope --test kernel_fixtures               # fixtures vs this kernel
//! ```
//!
//! Speed without weaker checks: per-flow counters are the difference of two reads (no
//! zeroing), silence ends early only when a dropping rule's counter already moved, untouched
//! packets are answered upstream at once, the affinity test's expiry wait overlaps the flows,
//! split tests are sized from the predicted probabilities, and scenarios run in parallel
//! worlds. `verify-kernel` prints where the time went per phase.
//!
//! Deviations of the world from a real node, each for a reason written where it is set up:
//! one namespace holds every Pod (a hairpin flow that lands on another Pod is judged by the
//! node's conntrack entry), ICMP rate limits and redirects are off, and the upstream router
//! rejects everything it would forward, so "left the node untouched" is an ICMP host
//! unreachable, not a timeout.

pub mod diff;
pub mod listen;
pub mod netfilter;
pub mod nl;
pub mod probe;
pub mod sys;
pub mod world;

#[cfg(test)]
mod tests;
