//! Reading a scenario document stream.

use super::config::{self, ProxyConfig, Reader};
use super::ip::{parse_cidr_sloppy, parse_ip_sloppy};
use super::network::NodeNetwork;
use super::{Loaded, Scenario};
use crate::diag::Diagnostic;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Map, Value};

/// Where each document starts and ends in the text (1-based lines), to point diagnostics at a
/// line. YAML documents are separated by `---` lines.
struct Lines<'a> {
    text: &'a str,
    /// (first line, last line) per document, or empty when the split is ambiguous.
    docs: Vec<(usize, usize)>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str, n_docs: usize) -> Self {
        let mut docs = Vec::new();
        let mut start = 1;
        let mut has_content = false;
        let total = text.lines().count();
        for (i, l) in text.lines().enumerate() {
            let ln = i + 1;
            if l.starts_with("---") {
                if has_content {
                    docs.push((start, ln - 1));
                }
                start = ln + 1;
                has_content = false;
            } else if l.starts_with("...") {
                continue;
            } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
                has_content = true;
            }
        }
        if has_content {
            docs.push((start, total));
        }
        if docs.len() != n_docs {
            docs.clear();
        }
        Lines { text, docs }
    }

    fn range(&self, doc: usize) -> (usize, usize) {
        self.docs
            .get(doc.wrapping_sub(1))
            .copied()
            .unwrap_or((1, usize::MAX))
    }

    /// First line of document `doc` (1-based) at or after `from` that holds `key:` (in block
    /// style at the start of the line, or inside a flow mapping `{..., key: ...}`).
    fn find_key(&self, doc: usize, key: &str, from: usize) -> Option<usize> {
        // An empty key (a field path like `metadata..x`) would match everywhere and never
        // advance the flow-style scan below.
        if key.is_empty() {
            return None;
        }
        let (a, b) = self.range(doc);
        let a = a.max(from);
        let is_key_at = |l: &str, at: usize| {
            let rest = l[at + key.len()..].trim_start_matches('"');
            rest.trim_start().starts_with(':')
        };
        self.text
            .lines()
            .enumerate()
            .skip(a.saturating_sub(1))
            .take_while(|(i, _)| *i < b)
            .find_map(|(i, l)| {
                let t = l
                    .trim_start()
                    .trim_start_matches("- ")
                    .trim_start_matches('"');
                if t.starts_with(key) && is_key_at(t, 0) {
                    return Some(i + 1);
                }
                // Flow style: `{name: x, namespace: y}`.
                let mut from = 0;
                while let Some(pos) = l[from..].find(key) {
                    let at = from + pos;
                    let before = l[..at].trim_end_matches('"').trim_end();
                    if (before.ends_with('{') || before.ends_with(',')) && is_key_at(l, at) {
                        return Some(i + 1);
                    }
                    from = at + key.len();
                }
                None
            })
    }

    fn doc_start(&self, doc: usize) -> Option<usize> {
        self.docs.get(doc.wrapping_sub(1)).map(|r| r.0)
    }
}

fn kind_of(v: &Value) -> (&str, &str) {
    (
        v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        v.get("kind").and_then(Value::as_str).unwrap_or(""),
    )
}

fn meta_name(v: &Value) -> String {
    let m = v.get("metadata");
    let name = m
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    match m.and_then(|m| m.get("namespace")).and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Report every key of `orig` that did not survive a round trip through the typed API object:
/// the API type does not know it, so kube-proxy would not see it either.
fn unknown_fields(orig: &Value, rt: &Value, path: &str, out: &mut Vec<String>) {
    match (orig, rt) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => unknown_fields(v, bv, &p, out),
                    None => {
                        let empty = v.is_null()
                            || v.as_array().is_some_and(|x| x.is_empty())
                            || v.as_object().is_some_and(|x| x.is_empty());
                        if !empty {
                            out.push(p);
                        }
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Kubernetes metadata kube-proxy never reads; not worth a warning each.
const METADATA_NOISE: &[&str] = &[
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.creationTimestamp",
    "metadata.generation",
    "metadata.managedFields",
    "metadata.annotations",
    "metadata.selfLink",
    "metadata.ownerReferences",
    "metadata.generateName",
    "metadata.finalizers",
];

struct Ctx<'a> {
    lines: Lines<'a>,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn place(&self, doc: usize, what: &str, field: Option<&str>) -> (Option<usize>, String) {
        let line = match field {
            Some(f) => {
                // Follow the path key by key (`spec`, then `ports`, then `name` …) so a common
                // last key such as `name` is found under its own parent, not in `metadata`.
                let keys = || {
                    f.split('.')
                        .map(|k| k.split('[').next().unwrap_or(k))
                        .filter(|k| !k.is_empty())
                };
                let by_path = keys().try_fold(0, |from, k| self.lines.find_key(doc, k, from));
                let last = keys().next_back().unwrap_or(f);
                by_path
                    .or_else(|| self.lines.find_key(doc, last, 0))
                    .or_else(|| self.lines.doc_start(doc))
            }
            None => self.lines.doc_start(doc),
        };
        let loc = match field {
            Some(f) => format!("document {doc} ({what}), field {f}"),
            None => format!("document {doc} ({what})"),
        };
        (line, loc)
    }
    fn error(&mut self, doc: usize, what: &str, field: Option<&str>, msg: impl Into<String>) {
        let (line, loc) = self.place(doc, what, field);
        self.diags.push(Diagnostic::error(line, loc, msg));
    }
    fn warn(&mut self, doc: usize, what: &str, field: Option<&str>, msg: impl Into<String>) {
        let (line, loc) = self.place(doc, what, field);
        self.diags.push(Diagnostic::warning(line, loc, msg));
    }

    /// Deserialize an API object with the real type, naming the failing field on error and
    /// warning about fields the type does not know.
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
        &mut self,
        doc: usize,
        what: &str,
        v: &Value,
    ) -> Option<T> {
        let r: Result<T, _> = serde_path_to_error::deserialize(v.clone());
        match r {
            Ok(t) => {
                if let Ok(rt) = serde_json::to_value(&t) {
                    let mut unknown = Vec::new();
                    unknown_fields(v, &rt, "", &mut unknown);
                    for f in unknown {
                        if !METADATA_NOISE.iter().any(|m| f.starts_with(m)) {
                            self.warn(doc, what, Some(&f), "unknown field for this API version: ignored (kube-proxy would not see it either)");
                        }
                    }
                }
                Some(t)
            }
            Err(e) => {
                let path = e.path().to_string();
                self.error(doc, what, Some(&path), e.into_inner().to_string());
                None
            }
        }
    }
}

/// Load a scenario from YAML or JSON text. Errors (anything that makes the scenario unusable)
/// come back as `Err` with every problem found; warnings come back with the scenario.
pub fn load(text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    // serde-saphyr's default budget guards against hostile input (1,024 documents, 1M events);
    // a real cluster dump is larger, so the limits scale with the input instead. Alias/anchor
    // bombs stay guarded by the alias-to-anchor ratio check.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1 + text.len() / 8;
    budget.max_events = 1_000_000 + text.len();
    budget.max_nodes = 250_000 + text.len();
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(2 * text.len());
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // YAML 1.2 booleans (true/false only): `namespace: y` is the string "y", not YAML 1.1's true.
    options.strict_booleans = true;
    let docs: Vec<Value> = match serde_saphyr::from_multiple_with_options::<Value>(text, options) {
        Ok(d) => d,
        Err(e) => {
            let line = e.location().map(|l| l.line() as usize);
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").to_string();
            return Err(vec![Diagnostic::error(line, "YAML", first)]);
        }
    };
    let mut ctx = Ctx {
        lines: Lines::new(text, docs.len()),
        diags: Vec::new(),
    };

    // Flatten `kind: List` (what `kubectl get a,b -o yaml` prints) keeping the document number.
    let mut objects: Vec<(usize, String, Value)> = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let doc = i + 1;
        match d {
            Value::Null => {}
            Value::Object(_) if kind_of(&d).1 == "List" || kind_of(&d).1.ends_with("List") => {
                match d.get("items") {
                    Some(Value::Array(items)) => {
                        for (j, it) in items.iter().enumerate() {
                            objects.push((doc, format!("items[{j}]"), it.clone()));
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(_) => ctx.error(doc, "List", Some("items"), "expected a list of objects"),
                }
            }
            Value::Object(_) => objects.push((doc, String::new(), d)),
            other => ctx.error(
                doc,
                "document",
                None,
                format!("expected a Kubernetes object, got {other}"),
            ),
        }
    }

    let mut config: Option<ProxyConfig> = None;
    let mut nodes: Vec<(usize, Node)> = Vec::new();
    let mut network: Option<(String, NodeNetwork)> = None;
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    let mut service_cidrs: Vec<IpNet> = Vec::new();

    for (doc, item, v) in &objects {
        let doc = *doc;
        let (api, kind) = kind_of(v);
        let what = if item.is_empty() {
            format!("{kind} {}", meta_name(v))
        } else {
            format!("{item}: {kind} {}", meta_name(v))
        };
        match (api, kind) {
            ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration") => {
                if config.is_some() {
                    ctx.error(doc, &what, None, "a second KubeProxyConfiguration: a node runs one kube-proxy");
                    continue;
                }
                let lines = &ctx.lines;
                let line_of = |k: &str| lines.find_key(doc, k, 0);
                let mut diags = Vec::new();
                let mut r = Reader { doc, line_of: &line_of, diags: &mut diags };
                config = Some(config::read(v.as_object().expect("object"), &mut r));
                ctx.diags.extend(diags);
            }
            ("v1", "Node") => {
                if let Some(n) = ctx.typed::<Node>(doc, &what, v) {
                    nodes.push((doc, n));
                }
            }
            ("v1", "Service") => {
                if let Some(s) = ctx.typed::<Service>(doc, &what, v) {
                    check_service(&mut ctx, doc, &what, &s);
                    services.push(s);
                }
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                if let Some(s) = ctx.typed::<EndpointSlice>(doc, &what, v) {
                    check_slice(&mut ctx, doc, &what, &s);
                    slices.push(s);
                }
            }
            ("networking.k8s.io/v1" | "networking.k8s.io/v1beta1", "ServiceCIDR") => {
                let cidrs = v.pointer("/spec/cidrs").and_then(Value::as_array);
                for (i, c) in cidrs.into_iter().flatten().enumerate() {
                    match c.as_str().and_then(parse_cidr_sloppy) {
                        Some(n) => service_cidrs.push(n),
                        None => ctx.error(doc, &what, Some(&format!("spec.cidrs[{i}]")), format!("{c} is not a CIDR")),
                    }
                }
            }
            ("proxyscope.dev/v1alpha1", "NodeNetwork") => {
                if network.is_some() {
                    ctx.error(doc, &what, None, "a second NodeNetwork: describe one node");
                    continue;
                }
                let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                network = Some((name, read_network(&mut ctx, doc, &what, v)));
            }
            ("v1", "Endpoints") => ctx.warn(
                doc,
                &what,
                None,
                "v1 Endpoints are ignored: kube-proxy reads EndpointSlices (discovery.k8s.io/v1) only",
            ),
            ("", _) | (_, "") => ctx.error(doc, &what, Some("apiVersion"), "missing apiVersion or kind"),
            _ => ctx.warn(doc, &what, Some("kind"), format!("{api} {kind} is not read by kube-proxy: ignored")),
        }
    }

    let config = config.unwrap_or_default();

    // Which node is ours: hostnameOverride, else the NodeNetwork's name, else the only Node.
    let node_name = if !config.hostname_override.is_empty() {
        config.hostname_override.to_lowercase()
    } else if let Some((n, _)) = network.as_ref().filter(|(n, _)| !n.is_empty()) {
        n.clone()
    } else if nodes.len() == 1 {
        nodes[0].1.metadata.name.clone().unwrap_or_default()
    } else if nodes.is_empty() {
        ctx.diags.push(Diagnostic::warning(
            None,
            "scenario",
            "no Node object and no NodeNetwork: the node is called `node` and has only loopback addresses",
        ));
        "node".to_string()
    } else {
        ctx.diags.push(Diagnostic::error(
            None,
            "scenario",
            "several Node objects: say which one is ours with KubeProxyConfiguration.hostnameOverride or a NodeNetwork document",
        ));
        String::new()
    };
    let node = nodes
        .iter()
        .find(|(_, n)| n.metadata.name.as_deref() == Some(node_name.as_str()))
        .map(|(_, n)| n.clone());
    if node.is_none() && !nodes.is_empty() && !node_name.is_empty() {
        ctx.diags.push(Diagnostic::warning(
            None,
            "scenario",
            format!(
                "no Node named `{node_name}`: the other Node objects only name where endpoints run"
            ),
        ));
    }

    let network = match network {
        Some((_, n)) => n,
        None => {
            let addrs: Vec<_> = node
                .as_ref()
                .and_then(|n| n.status.as_ref())
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| matches!(a.type_.as_str(), "InternalIP" | "ExternalIP"))
                .filter_map(|a| parse_ip_sloppy(&a.address))
                .collect();
            NodeNetwork::from_addresses(&addrs)
        }
    };

    if ctx.diags.iter().any(|d| d.is_error()) {
        return Err(ctx.diags);
    }
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok(Loaded {
        scenario: Scenario {
            config,
            node_name,
            node,
            network,
            services,
            slices,
            service_cidrs,
        },
        warnings: ctx.diags,
    })
}

/// A DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters): what the API
/// server requires of namespaces; Service names must also start with a letter (DNS-1035).
fn is_dns_label(s: &str, letter_first: bool) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(ok)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && (!letter_first || b[0].is_ascii_lowercase())
}

/// An IANA service name (`validation.IsValidPortName`): at most 15 lowercase letters, digits and
/// single inner hyphens, with at least one letter.
fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    is_dns_label(s, false)
        && b.len() <= 15
        && !s.contains("--")
        && b.iter().any(|c| c.is_ascii_lowercase())
}

fn check_service(ctx: &mut Ctx, doc: usize, what: &str, s: &Service) {
    // kube-proxy writes these names unquoted into rule comments and hashes them into chain
    // names; the API server guarantees their shape, so anything else cannot reach a node.
    match s.metadata.name.as_deref().unwrap_or("") {
        "" => ctx.error(doc, what, Some("metadata.name"), "a Service needs a name"),
        n if !is_dns_label(n, true) => ctx.error(
            doc,
            what,
            Some("metadata.name"),
            format!("`{n}` is not a valid Service name (lowercase letters, digits, `-`; a letter first; at most 63)"),
        ),
        _ => {}
    }
    if let Some(ns) = s.metadata.namespace.as_deref()
        && !is_dns_label(ns, false)
    {
        ctx.error(
            doc,
            what,
            Some("metadata.namespace"),
            format!("`{ns}` is not a valid namespace (lowercase letters, digits, `-`; at most 63)"),
        );
    }
    if s.metadata.namespace.is_none() {
        ctx.warn(
            doc,
            what,
            Some("metadata"),
            "no metadata.namespace: using `default`",
        );
    }
    let Some(spec) = &s.spec else {
        ctx.error(doc, what, Some("spec"), "a Service needs a spec");
        return;
    };
    let bad_ip = |ip: &str| ip != "None" && !ip.is_empty() && parse_ip_sloppy(ip).is_none();
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if bad_ip(ip) {
            ctx.error(
                doc,
                what,
                Some(&format!("spec.clusterIPs[{i}]")),
                format!("`{ip}` is not an IP address"),
            );
        }
    }
    // The API keeps clusterIP equal to clusterIPs[0]; name the field the user actually wrote.
    if let Some(ip) = &spec.cluster_ip
        && bad_ip(ip)
        && cluster_ips.first() != Some(ip)
    {
        ctx.error(
            doc,
            what,
            Some("spec.clusterIP"),
            format!("`{ip}` is not an IP address"),
        );
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if parse_ip_sloppy(ip).is_none() {
            ctx.error(
                doc,
                what,
                Some(&format!("spec.externalIPs[{i}]")),
                format!("`{ip}` is not an IP address"),
            );
        }
    }
    for (i, r) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        if parse_cidr_sloppy(r).is_none() {
            // kube-proxy logs and skips such a range rather than failing (its test feeds " 203.0.113.0/25").
            ctx.warn(
                doc,
                what,
                Some(&format!("spec.loadBalancerSourceRanges[{i}]")),
                format!("`{r}` is not a CIDR: kube-proxy skips it"),
            );
        }
    }
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        // API validation admits only IPs here (kube-proxy parses them unchecked).
        if let Some(ip) = &ing.ip
            && !ip.is_empty()
            && parse_ip_sloppy(ip).is_none()
        {
            ctx.error(
                doc,
                what,
                Some(&format!("status.loadBalancer.ingress[{i}].ip")),
                format!("`{ip}` is not an IP address"),
            );
        }
    }
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let f = format!("spec.ports[{i}]");
        if let Some(n) = p.name.as_deref()
            && !n.is_empty()
            && !is_port_name(n)
        {
            ctx.error(
                doc,
                what,
                Some(&format!("{f}.name")),
                format!(
                    "`{n}` is not a valid port name (at most 15 lowercase letters, digits, `-`)"
                ),
            );
        }
        if !(1..=65535).contains(&p.port) {
            ctx.error(
                doc,
                what,
                Some(&format!("{f}.port")),
                format!("port {} is out of range 1..65535", p.port),
            );
        }
        if let Some(np) = p.node_port
            && !(0..=65535).contains(&np)
        {
            ctx.error(
                doc,
                what,
                Some(&format!("{f}.nodePort")),
                format!("nodePort {np} is out of range"),
            );
        }
        if let Some(proto) = &p.protocol
            && crate::trace::Proto::parse(proto).is_none()
        {
            ctx.error(
                doc,
                what,
                Some(&format!("{f}.protocol")),
                format!("`{proto}` is not TCP, UDP or SCTP"),
            );
        }
    }
    if let Some(t) = &spec.type_
        && !matches!(
            t.as_str(),
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        )
    {
        ctx.error(
            doc,
            what,
            Some("spec.type"),
            format!("unknown Service type `{t}`"),
        );
    }
    if spec.traffic_distribution.is_some() {
        ctx.warn(
            doc,
            what,
            Some("spec.trafficDistribution"),
            "topology-aware routing is not modelled: every endpoint is used as if there were no hints",
        );
    }
    if let Some(hc) = spec.health_check_node_port
        && !(0..=65535).contains(&hc)
    {
        ctx.error(
            doc,
            what,
            Some("spec.healthCheckNodePort"),
            format!("{hc} is out of range"),
        );
    }
}

fn check_slice(ctx: &mut Ctx, doc: usize, what: &str, s: &EndpointSlice) {
    let has_owner = s
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("kubernetes.io/service-name"));
    if !has_owner {
        ctx.warn(
            doc,
            what,
            Some("metadata.labels"),
            "no kubernetes.io/service-name label: kube-proxy ignores this slice",
        );
    }
    if !matches!(s.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
        ctx.error(
            doc,
            what,
            Some("addressType"),
            format!("unknown addressType `{}`", s.address_type),
        );
    }
    for (i, e) in s.endpoints.iter().flatten().enumerate() {
        for (j, a) in e.addresses.iter().enumerate() {
            if s.address_type != "FQDN" && parse_ip_sloppy(a).is_none() {
                ctx.error(
                    doc,
                    what,
                    Some(&format!("endpoints[{i}].addresses[{j}]")),
                    format!("`{a}` is not an IP address"),
                );
            }
        }
        if e.addresses.len() > 1 {
            ctx.warn(
                doc,
                what,
                Some(&format!("endpoints[{i}].addresses")),
                "only addresses[0] is used (as kube-proxy does)",
            );
        }
        if e.hints.is_some() {
            ctx.warn(
                doc,
                what,
                Some(&format!("endpoints[{i}].hints")),
                "topology hints are not modelled: the endpoint is used as if there were no hints",
            );
        }
    }
    for (i, p) in s.ports.iter().flatten().enumerate() {
        if let Some(port) = p.port
            && !(1..=65535).contains(&port)
        {
            ctx.error(
                doc,
                what,
                Some(&format!("ports[{i}].port")),
                format!("port {port} is out of range"),
            );
        }
    }
}

fn read_network(ctx: &mut Ctx, doc: usize, what: &str, v: &Value) -> NodeNetwork {
    let mut n = NodeNetwork {
        interfaces: Vec::new(),
        random_fully: true,
        nfacct: true,
        bridges: super::network::default_bridges(),
        br_netfilter: true,
    };
    let empty = Map::new();
    for (k, val) in v.as_object().unwrap_or(&empty) {
        match k.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            "interfaces" => {
                let Some(o) = val.as_object() else {
                    ctx.error(
                        doc,
                        what,
                        Some("interfaces"),
                        "expected a map of interface name -> list of address/prefix",
                    );
                    continue;
                };
                for (ifname, addrs) in o {
                    let mut list = Vec::new();
                    for (i, a) in addrs.as_array().into_iter().flatten().enumerate() {
                        let f = format!("interfaces.{ifname}[{i}]");
                        let parsed = a.as_str().and_then(|s| {
                            let (ip, p) = s.split_once('/')?;
                            let ip = parse_ip_sloppy(ip)?;
                            IpNet::new(ip, p.parse().ok()?).ok()
                        });
                        match parsed {
                            Some(net) => list.push(net),
                            None => ctx.error(
                                doc,
                                what,
                                Some(&f),
                                format!("{a} is not an address with a prefix like 192.168.0.2/24"),
                            ),
                        }
                    }
                    if !addrs.is_array() {
                        ctx.error(
                            doc,
                            what,
                            Some(&format!("interfaces.{ifname}")),
                            "expected a list of addresses",
                        );
                    }
                    n.interfaces.push((ifname.clone(), list));
                }
            }
            "bridges" => {
                let Some(o) = val.as_object() else {
                    ctx.error(
                        doc,
                        what,
                        Some("bridges"),
                        "expected a map of bridge name -> list of port interface names",
                    );
                    continue;
                };
                n.bridges.clear();
                for (bridge, ports) in o {
                    let mut list = Vec::new();
                    for (i, p) in ports.as_array().into_iter().flatten().enumerate() {
                        // IFNAMSIZ - 1 bytes; `-m physdev` compares port names as the kernel does.
                        match p.as_str().filter(|s| !s.is_empty() && s.len() <= 15 && !s.contains(['/', ' '])) {
                            Some(s) => list.push(s.to_string()),
                            None => ctx.error(
                                doc,
                                what,
                                Some(&format!("bridges.{bridge}[{i}]")),
                                format!("{p} is not an interface name (1 to 15 characters, no '/' or space)"),
                            ),
                        }
                    }
                    if !ports.is_array() {
                        ctx.error(
                            doc,
                            what,
                            Some(&format!("bridges.{bridge}")),
                            "expected a list of port interface names",
                        );
                    }
                    n.bridges.push((bridge.clone(), list));
                }
            }
            "features" => {
                for (f, b) in val.as_object().into_iter().flatten() {
                    let field = format!("features.{f}");
                    let Some(b) = b.as_bool() else {
                        ctx.error(doc, what, Some(&field), "expected true or false");
                        continue;
                    };
                    match f.as_str() {
                        "randomFully" => n.random_fully = b,
                        "nfacct" => n.nfacct = b,
                        "brNetfilter" => n.br_netfilter = b,
                        other => ctx.warn(
                            doc,
                            what,
                            Some(&field),
                            format!("unknown feature `{other}`: ignored"),
                        ),
                    }
                }
            }
            other => ctx.warn(
                doc,
                what,
                Some(other),
                format!("unknown field `{other}`: ignored"),
            ),
        }
    }
    n
}
