//! deploy/*.yaml read into the real Kubernetes API types (a typo in a field name or a wrong
//! shape fails here), and the security properties deploy/README.md promises.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde_json::Value;

fn docs(file: &str) -> Vec<Value> {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// Fields the typed structs would silently ignore are caught by comparing the round trip.
fn no_unknown_fields<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) {
    let t: T = typed(v);
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(&back, v, "a field was dropped by the API type");
}

#[test]
fn daemonset_is_host_network_loopback_and_least_privilege() {
    let d = docs("daemonset.yaml");
    assert_eq!(d.len(), 1);
    no_unknown_fields::<DaemonSet>(&d[0]);
    let ds: DaemonSet = typed(&d[0]);
    let pod = ds.spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("proxyscope-agent")
    );
    let [c] = pod.containers.as_slice() else {
        panic!("one container")
    };
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "agent");
    assert!(
        args.contains(&"--listen=127.0.0.1:9180".to_string()),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a.contains("insecure")));
    // The RBAC below exists for this flag.
    assert!(args.contains(&"--in-cluster".to_string()), "{args:?}");
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["NET_ADMIN", "NET_RAW"]);
    // Probes must reach the loopback listener (and pass its loopback-Host check).
    for p in [&c.liveness_probe, &c.readiness_probe] {
        let g = p.clone().unwrap().http_get.unwrap();
        assert_eq!(g.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(g.path.as_deref(), Some("/healthz"));
    }
}

#[test]
fn rbac_only_lists_and_watches_services_and_endpointslices() {
    let d = docs("rbac.yaml");
    let kinds: Vec<&str> = d.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding"
        ]
    );
    no_unknown_fields::<ClusterRole>(&d[2]);
    let role: ClusterRole = typed(&d[2]);
    let mut granted = Vec::new();
    for r in role.rules.unwrap() {
        assert_eq!(r.verbs, ["list", "watch"]);
        for g in r.api_groups.unwrap() {
            for res in r.resources.clone().unwrap() {
                granted.push(format!("{g}/{res}"));
            }
        }
    }
    assert_eq!(granted, ["/services", "discovery.k8s.io/endpointslices"]);
    assert_eq!(d[3]["subjects"][0]["name"], "proxyscope-agent");
    assert_eq!(d[3]["roleRef"]["name"], "proxyscope-agent");
}
