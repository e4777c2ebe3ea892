//! A "world" of network namespaces wired with veth pairs, shaped like one Kubernetes node.
//!
//! ```text
//!  ext (external client, LAN)         node (kube-proxy's rules live here)          pods (every Pod IP)
//!  eth0 192.168.0.100/24  ───veth───  eth0 192.168.0.2/24, 2001:db8::1/64
//!       2001:db8::100/64              pods0 10.244.0.1/24 ─────────veth─────────  eth0 <pod IPs>/32,/128
//!                                           fd00:10:244::1/64                     listeners: TCP+UDP on
//!  podc (a Pod on this node)                                                      every endpoint ip:port
//!  eth0 10.244.0.250/32  ────veth───  podc0 (route 10.244.0.250/32, fd00:10:244::fa/128)
//!       fd00:10:244::fa/128
//!                                     up0 172.31.255.2/30 ────veth────  wan (upstream router)
//!                                         fd00:ffff::2/64                eth0 172.31.255.1/30,
//!                                     default routes via wan             fd00:ffff::1/64; rejects
//!                                                                        all it would forward
//! ```
//!
//! The upstream `wan` namespace exists so that packets no kube-proxy rule rewrote leave the node
//! by a different interface than they came in: with the LAN client as the default gateway the
//! node would send an ICMP redirect first, and the ICMP rate limiter then swallows the port
//! unreachable of a filter `-j REJECT` (seen here: `IcmpOutRateLimitHost`). `wan` rejects
//! everything it would forward with ICMP host unreachable (IPv6: address unreachable), so
//! "left the node unmodified" comes back at once as an error nothing else in the world sends
//! (kube-proxy's REJECTs are port-unreachable): a positive observation instead of a timeout.
//!
//! The address plan is the one `proxyscope_core::generate` uses for its scenarios, so generated
//! Services and EndpointSlices are reachable here. Every address lives in one of our namespaces;
//! nothing in the host's namespace is touched (every command runs under `ip netns exec` / `ip -n`).

use super::netfilter::{Backend, Netfilter};
use super::nl::NfSocket;
use super::sys::{self, SysError};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Node-side addresses and the client addresses of the world.
pub const NODE_IP4: &str = "192.168.0.2";
pub const NODE_IP6: &str = "2001:db8::1";
pub const EXT_CLIENT_IP4: &str = "192.168.0.100";
pub const EXT_CLIENT_IP6: &str = "2001:db8::100";
/// A second address of the external client, used only by the affinity test: its `-m recent`
/// entries then outlive the other flows' clean slates (which forget only their own source).
pub const AFFINITY_CLIENT_IP4: &str = "192.168.0.101";
pub const AFFINITY_CLIENT_IP6: &str = "2001:db8::101";
pub const POD_CLIENT_IP4: &str = "10.244.0.250";
pub const POD_CLIENT_IP6: &str = "fd00:10:244::fa";
/// The node's address towards its pods: what MASQUERADE rewrites a Pod-bound packet's source to.
pub const NODE_POD_GW4: &str = "10.244.0.1";
pub const NODE_POD_GW6: &str = "fd00:10:244::1";
pub const CLUSTER_CIDR4: &str = "10.244.0.0/16";
pub const CLUSTER_CIDR6: &str = "fd00:10:244::/48";

/// Which vantage point a probe is sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    /// A machine on the node's LAN: traffic arrives on the node's eth0 (PREROUTING → FORWARD/INPUT).
    External,
    /// A Pod on this node (source inside the node's podCIDR): PREROUTING via the pod veth.
    Pod,
    /// A process on the node itself: OUTPUT path, source chosen by routing (or 127.0.0.1).
    Node,
    /// A backend Pod reaching its own Service (source = this endpoint address): kube-proxy's
    /// hairpin case, masqueraded by the KUBE-SEP chain's `-s <endpoint>` rule when the DNAT picks
    /// the Pod itself.
    Hairpin(IpAddr),
}

impl Client {
    pub const ALL: [Client; 3] = [Client::External, Client::Pod, Client::Node];

    pub fn name(self) -> &'static str {
        match self {
            Client::External => "external",
            Client::Pod => "pod",
            Client::Node => "node",
            Client::Hairpin(_) => "hairpin",
        }
    }

    /// The source address the client's packets carry towards `dst` (what kube-proxy's rules see
    /// in PREROUTING / OUTPUT).
    pub fn source_for(self, dst: IpAddr) -> IpAddr {
        let s = match (self, dst.is_ipv4()) {
            (Client::Node, _) if dst.is_loopback() => return dst,
            (Client::Hairpin(ip), _) => return ip,
            (Client::External, true) => EXT_CLIENT_IP4,
            (Client::External, false) => EXT_CLIENT_IP6,
            (Client::Pod, true) => POD_CLIENT_IP4,
            (Client::Pod, false) => POD_CLIENT_IP6,
            // Node-originated traffic to a non-local address leaves by the default route via eth0.
            (Client::Node, true) => NODE_IP4,
            (Client::Node, false) => NODE_IP6,
        };
        s.parse().expect("constant address")
    }
}

/// One network namespace we created; deleted on drop (including during a panic's unwinding).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: String) -> Result<Netns, SysError> {
        sys::run(None, "ip", &["netns", "add", &name], None)?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> args…`
    pub fn ip(&self, args: &[&str]) -> Result<String, SysError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        sys::run(None, "ip", &full, None)
    }

    /// Run a tool inside this namespace.
    pub fn exec(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, SysError> {
        sys::run(Some(&self.name), program, args, stdin)
    }

    /// Set sysctls by writing `/proc/sys/…` from a thread inside the namespace (the `net.*`
    /// tree there is the opening thread's namespace's).
    pub fn sysctls(&self, settings: &[(&str, &str)]) -> Result<(), SysError> {
        sys::in_netns(&self.name, || {
            for (key, value) in settings {
                let path = format!("/proc/sys/{}", key.replace('.', "/"));
                std::fs::write(&path, value)
                    .map_err(|e| SysError(format!("sysctl {key}={value}: {path}: {e}")))?;
            }
            Ok(())
        })?
    }
}

/// MAC address of `dev` in `ns` (`link/ether …` of `ip link show`).
fn mac(ns: &Netns, dev: &str) -> Result<String, SysError> {
    let out = ns.ip(&["link", "show", "dev", dev])?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| SysError(format!("{}: no MAC address on {dev}", ns.name)))
}

/// Run `ip -batch -` in a namespace (one process for many changes).
fn batch(ns: &Netns, commands: &str) -> Result<(), SysError> {
    if commands.is_empty() {
        return Ok(());
    }
    sys::run(None, "ip", &["-n", &ns.name, "-batch", "-"], Some(commands)).map(|_| ())
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sys::run(None, "ip", &["netns", "del", &self.name], None);
    }
}

static WORLD_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Prefix of every namespace this process creates: `psk-<pid>-`.
fn own_prefix() -> String {
    format!("psk-{}-", std::process::id())
}

/// Delete `psk-<pid>-*` namespaces left behind by harness processes that no longer exist
/// (e.g. a test run killed with SIGKILL). Namespaces of live processes are left alone.
pub fn clean_stale_namespaces() {
    let Ok(list) = sys::run(None, "ip", &["netns", "list"], None) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("psk-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !sys::pid_alive(pid) {
            let _ = sys::run(None, "ip", &["netns", "del", name], None);
        }
    }
}

/// The namespaces of one node plus its clients. Dropping it deletes them all.
#[derive(Debug)]
pub struct World {
    /// Netlink socket inside `node` (dropped before the namespaces are deleted).
    pub nl: NfSocket,
    pub node: Netns,
    pub pods: Netns,
    pub ext: Netns,
    pub podc: Netns,
    pub wan: Netns,
    /// Pod addresses configured in `pods` so far.
    pod_addrs: Vec<IpAddr>,
    /// Source address of each client per family `[v4, v6]` (see [`World::adopt`]).
    sources: [[IpAddr; 2]; 3],
    /// The iptables implementation the node's rules are loaded with.
    pub backend: Backend,
}

impl World {
    /// Build the namespaces, veths, addresses, routes and sysctls of the diagram above.
    pub fn new() -> Result<World, SysError> {
        clean_stale_namespaces();
        let n = WORLD_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = |role: &str| format!("{}{n}-{role}", own_prefix());
        // Created one by one so a failure half-way drops (deletes) the ones already made.
        let node = Netns::create(name("node"))?;
        let pods = Netns::create(name("pods"))?;
        let ext = Netns::create(name("ext"))?;
        let podc = Netns::create(name("podc"))?;
        let wan = Netns::create(name("wan"))?;
        let nl = NfSocket::open(&node.name)?;
        let sources = [Client::External, Client::Pod, Client::Node].map(|c| {
            let v4: IpAddr = "10.96.0.1".parse().expect("constant");
            let v6: IpAddr = "fd00:10:96::1".parse().expect("constant");
            [c.source_for(v4), c.source_for(v6)]
        });
        let w = World {
            nl,
            node,
            pods,
            ext,
            podc,
            wan,
            pod_addrs: Vec::new(),
            sources,
            backend: Backend::Nft,
        };
        w.wire()?;
        Ok(w)
    }

    fn wire(&self) -> Result<(), SysError> {
        let node = &self.node;
        // veth pairs are created inside the node namespace and one end is moved straight into the
        // peer namespace, so no interface ever exists in the host's namespace. One `ip -batch`
        // per namespace: a process per command made building a world slower than testing it.
        let mut b = String::new();
        for (dev, peer) in [
            ("eth0", &self.ext),
            ("pods0", &self.pods),
            ("podc0", &self.podc),
            ("up0", &self.wan),
        ] {
            b.push_str(&format!(
                "link add {dev} type veth peer name eth0 netns {}\n",
                peer.name
            ));
        }
        batch(node, &b)?;

        // Forwarding as on any Kubernetes node; route_localnet because kube-proxy sets it when
        // localhost NodePorts are enabled (DNAT of 127.0.0.1:<nodePort> to a Pod must be routable).
        // The harness sends hundreds of flows a second from one client; the kernel's per-peer
        // ICMP rate limit (1/s after a burst of 6) would turn later REJECTs into silent drops.
        // A real client sending one connection at a time never notices the limit.
        // Hairpin traffic leaves the node by the interface it came in on. Real nodes bridge
        // their Pods (hairpin mode on the bridge port); here the node routes, and an ICMP
        // redirect would teach the pods namespace a shortcut that bypasses the node's rules.
        node.sysctls(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv4.conf.all.route_localnet", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.icmp_ratelimit", "0"),
            ("net.ipv6.icmp.ratelimit", "0"),
            ("net.ipv4.icmp_msgs_per_sec", "100000"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.pods0.send_redirects", "0"),
        ])?;
        // The pods namespace answers for many addresses on one veth: no reverse-path checks.
        self.pods.sysctls(&[
            ("net.ipv4.conf.all.accept_redirects", "0"),
            ("net.ipv6.conf.all.accept_redirects", "0"),
            ("net.ipv6.conf.eth0.accept_redirects", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ])?;
        // Every flow that leaves the node untouched gets its "unreachable" from here.
        // No redirect back to the node before the REJECT (the packet would leave by the link
        // it came in on).
        self.wan.sysctls(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv4.icmp_ratelimit", "0"),
            ("net.ipv6.icmp.ratelimit", "0"),
            ("net.ipv4.icmp_msgs_per_sec", "100000"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
        ])?;

        // `nodad`: no IPv6 duplicate address detection, so addresses are usable immediately.
        // The node's own podCIDR is on-link on pods0, like a CNI bridge (cni0 10.244.0.1/24).
        // fd00:10:244::1 is also on podc0: IPv6 neighbour discovery only answers for addresses
        // of the interface the solicitation arrived on (unlike ARP with arp_ignore=0).
        // The default route upstream gives node-originated packets to Service IPs a route
        // before nat OUTPUT rewrites them, as on a real node; `src` keeps their source the
        // node's eth0 address (what `status.addresses` says).
        let node_cmds = format!(
            "addr add 192.168.0.2/24 dev eth0
addr add 2001:db8::1/64 dev eth0 nodad
addr add 10.244.0.1/24 dev pods0
addr add fd00:10:244::1/64 dev pods0 nodad
addr add fd00:10:244::1/128 dev podc0 nodad
addr add 172.31.255.2/30 dev up0
addr add fd00:ffff::2/64 dev up0 nodad
link set eth0 up
link set pods0 up
link set podc0 up
link set up0 up
route add {CLUSTER_CIDR4} dev pods0
route add {CLUSTER_CIDR6} dev pods0
route add 10.244.0.250/32 dev podc0
route add fd00:10:244::fa/128 dev podc0
route add default via 172.31.255.1 dev up0 src {NODE_IP4}
route add ::/0 via fd00:ffff::1 dev up0 src {NODE_IP6}
"
        );
        batch(node, &node_cmds)?;
        batch(
            &self.wan,
            "addr add 172.31.255.1/30 dev eth0
addr add fd00:ffff::1/64 dev eth0 nodad
link set eth0 up
route add default via 172.31.255.2 dev eth0
route add ::/0 via fd00:ffff::2 dev eth0
",
        )?;
        // The upstream router's answer to anything it would forward: REJECT (subject to the
        // per-namespace ICMP limits set above), not an `unreachable` route, whose ICMP errors
        // the kernel rate-limits per peer by the host-wide net.ipv4.route.error_cost.
        for (tool, with) in [
            ("iptables-restore", "icmp-host-unreachable"),
            ("ip6tables-restore", "icmp6-addr-unreachable"),
        ] {
            self.wan.exec(
                tool,
                &[],
                Some(&format!(
                    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j REJECT --reject-with {with}\nCOMMIT\n"
                )),
            )?;
        }
        batch(
            &self.ext,
            &format!(
                "addr add 192.168.0.100/24 dev eth0
addr add 2001:db8::100/64 dev eth0 nodad
addr add {AFFINITY_CLIENT_IP4}/24 dev eth0
addr add {AFFINITY_CLIENT_IP6}/64 dev eth0 nodad
link set eth0 up
route add default via {NODE_IP4} dev eth0
route add ::/0 via {NODE_IP6} dev eth0
"
            ),
        )?;
        let pod_side = format!(
            "link set eth0 up
route add {NODE_POD_GW4}/32 dev eth0
route add default via {NODE_POD_GW4} dev eth0
route add {NODE_POD_GW6}/128 dev eth0
route add ::/0 via {NODE_POD_GW6} dev eth0
"
        );
        batch(
            &self.podc,
            &format!(
                "addr add 10.244.0.250/32 dev eth0
addr add fd00:10:244::fa/128 dev eth0 nodad
{pod_side}"
            ),
        )?;
        batch(&self.pods, &pod_side)?;
        self.pin_neighbors()
    }

    /// Permanent neighbour entries on every link, both ways. Neighbour discovery is not what
    /// the suite tests, and an unanswered first solicitation (IPv6 retries after 1 s) would
    /// read as a dropped flow within the probe timeout.
    fn pin_neighbors(&self) -> Result<(), SysError> {
        let node_eth0 = mac(&self.node, "eth0")?;
        let node_pods0 = mac(&self.node, "pods0")?;
        let node_podc0 = mac(&self.node, "podc0")?;
        let node_up0 = mac(&self.node, "up0")?;
        let (ext, wan) = (mac(&self.ext, "eth0")?, mac(&self.wan, "eth0")?);
        let pin = |ip: &str, mac: &str, dev: &str| {
            format!("neigh replace {ip} lladdr {mac} dev {dev} nud permanent\n")
        };
        batch(
            &self.node,
            &[
                pin(EXT_CLIENT_IP4, &ext, "eth0"),
                pin(EXT_CLIENT_IP6, &ext, "eth0"),
                pin(AFFINITY_CLIENT_IP4, &ext, "eth0"),
                pin(AFFINITY_CLIENT_IP6, &ext, "eth0"),
                pin("172.31.255.1", &wan, "up0"),
                pin("fd00:ffff::1", &wan, "up0"),
            ]
            .concat(),
        )?;
        batch(
            &self.ext,
            &[
                pin(NODE_IP4, &node_eth0, "eth0"),
                pin(NODE_IP6, &node_eth0, "eth0"),
            ]
            .concat(),
        )?;
        batch(
            &self.wan,
            &[
                pin("172.31.255.2", &node_up0, "eth0"),
                pin("fd00:ffff::2", &node_up0, "eth0"),
            ]
            .concat(),
        )?;
        batch(
            &self.pods,
            &[
                pin(NODE_POD_GW4, &node_pods0, "eth0"),
                pin(NODE_POD_GW6, &node_pods0, "eth0"),
            ]
            .concat(),
        )?;
        batch(
            &self.podc,
            &[
                pin(NODE_POD_GW4, &node_podc0, "eth0"),
                pin(NODE_POD_GW6, &node_podc0, "eth0"),
            ]
            .concat(),
        )
    }

    /// Give the pods namespace these Pod IPs (idempotent per address), with a host route on
    /// the node for each, so scenarios whose Pods live outside 10.244.0.0/16 work too.
    pub fn add_pod_ips(&mut self, ips: &[IpAddr]) -> Result<(), SysError> {
        let mut pods_batch = String::new();
        let mut node_batch = String::new();
        let pods_mac = mac(&self.pods, "eth0")?;
        for ip in ips {
            if self.pod_addrs.contains(ip) {
                continue;
            }
            // `ip -batch` takes no `-6`: the family comes from the address.
            let (host, nodad) = if ip.is_ipv4() {
                ("32", "")
            } else {
                ("128", " nodad")
            };
            pods_batch.push_str(&format!("addr replace {ip}/{host} dev eth0{nodad}\n"));
            node_batch.push_str(&format!("route replace {ip}/{host} dev pods0\n"));
            node_batch.push_str(&format!(
                "neigh replace {ip} lladdr {pods_mac} dev pods0 nud permanent\n"
            ));
            self.pod_addrs.push(*ip);
        }
        batch(&self.pods, &pods_batch)?;
        batch(&self.node, &node_batch)
    }

    /// Make the world match a scenario's node: its addresses become local to the node
    /// namespace (`node_ips`), and the Pod client takes the `pod_client` addresses (inside the
    /// node's podCIDR, so kube-proxy's local-traffic detector sees a Pod).
    pub fn adopt(&mut self, node_ips: &[IpAddr], pod_client: &[IpAddr]) -> Result<(), SysError> {
        let mut node_batch = String::new();
        let mut podc_batch = String::new();
        let podc_mac = mac(&self.podc, "eth0")?;
        for ip in node_ips {
            let (host, nodad) = if ip.is_ipv4() {
                ("32", "")
            } else {
                ("128", " nodad")
            };
            node_batch.push_str(&format!("addr replace {ip}/{host} dev eth0{nodad}\n"));
            self.sources[2][usize::from(ip.is_ipv6())] = *ip;
        }
        for ip in pod_client {
            // `ip -batch` takes no `-6`: the family comes from the address.
            let (host, nodad) = if ip.is_ipv4() {
                ("32", "")
            } else {
                ("128", " nodad")
            };
            podc_batch.push_str(&format!("addr replace {ip}/{host} dev eth0{nodad}\n"));
            node_batch.push_str(&format!("route replace {ip}/{host} dev podc0\n"));
            node_batch.push_str(&format!(
                "neigh replace {ip} lladdr {podc_mac} dev podc0 nud permanent\n"
            ));
            self.sources[1][usize::from(ip.is_ipv6())] = *ip;
        }
        batch(&self.podc, &podc_batch)?;
        batch(&self.node, &node_batch)
    }

    /// Put the node's Pod-network addresses (e.g. a CNI bridge's `10.0.0.1/24`) on the
    /// pod-facing veth, so MASQUERADE towards those Pods picks them as the kernel would.
    pub fn add_pod_gateways(&self, nets: &[ipnet::IpNet]) -> Result<(), SysError> {
        let mut node_batch = String::new();
        for n in nets {
            let nodad = if n.addr().is_ipv6() { " nodad" } else { "" };
            node_batch.push_str(&format!("addr replace {n} dev pods0{nodad}\n"));
        }
        batch(&self.node, &node_batch)
    }

    /// The source address `client`'s packets to `dst` carry (what kube-proxy's rules see).
    pub fn source(&self, client: Client, dst: IpAddr) -> IpAddr {
        if client == Client::Node && dst.is_loopback() {
            return dst;
        }
        let i = match client {
            Client::External => 0,
            Client::Pod => 1,
            Client::Node => 2,
            Client::Hairpin(ip) => return ip,
        };
        self.sources[i][usize::from(dst.is_ipv6())]
    }

    /// The node's netfilter, through this world's iptables backend.
    pub fn netfilter(&self) -> Netfilter<'_> {
        Netfilter {
            ns: &self.node,
            backend: self.backend,
            nl: Some(&self.nl),
        }
    }

    /// The namespace a client's sockets are opened in.
    pub fn client_ns(&self, client: Client) -> &Netns {
        match client {
            Client::External => &self.ext,
            Client::Pod => &self.podc,
            Client::Node => &self.node,
            Client::Hairpin(_) => &self.pods,
        }
    }
}
