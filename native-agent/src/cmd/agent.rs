//! `proxyscope agent`: serve this node's netfilter / IPVS / conntrack state (read-only) over a
//! websocket and a small HTTP API. The work is in `crate::agent`; this file is flags and startup.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::agent::hub::{Hub, poll_loop};
use crate::agent::kube;
use crate::agent::server::{self, Config};
use crate::agent::snapshot::collect;
use crate::agent::sys::{HostSys, Sys};
use crate::error::CliError;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Address to listen on. Anything but loopback needs --token-file and TLS (--tls-cert,
    /// --tls-key) or --insecure.
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub listen: SocketAddr,
    /// Poll interval: `500ms`, `2s` or a number of seconds. At least 100ms.
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// File holding the token clients must present (`Authorization: Bearer T` or `?token=T`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Allow a non-loopback --listen without TLS (the token and the node's state travel in clear).
    #[arg(long)]
    pub insecure: bool,
    /// Serve HTTPS and wss:// with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Read a network namespace instead of the host's (`ip netns exec NAME ...`).
    #[arg(long)]
    pub netns: Option<String>,
    /// Watch Services and EndpointSlices with this kubeconfig's current context: chains are
    /// named by their Service and drift (API vs node) is part of the snapshot.
    #[arg(long, conflicts_with = "in_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Like --kubeconfig, with the Pod's service account (the DaemonSet's RBAC).
    #[arg(long)]
    pub in_cluster: bool,
    /// A browser origin allowed on /ws (e.g. `https://proxyscope.example`); repeatable.
    #[arg(long = "allow-origin")]
    pub allow_origin: Vec<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?}: expected e.g. 500ms, 2s or 2");
    let d = match s.strip_suffix("ms") {
        Some(ms) => Duration::from_millis(ms.parse().map_err(|_| bad())?),
        None => {
            let secs: f64 = s
                .strip_suffix('s')
                .unwrap_or(s)
                .parse()
                .map_err(|_| bad())?;
            if !(secs.is_finite() && (0.0..1e9).contains(&secs)) {
                return Err(bad());
            }
            Duration::from_secs_f64(secs)
        }
    };
    if d < Duration::from_millis(100) {
        return Err(format!(
            "{s:?}: at least 100ms (each poll runs several dump tools)"
        ));
    }
    Ok(d)
}

fn node_name() -> String {
    // NODE_NAME comes from the DaemonSet's downward API (spec.nodeName).
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

pub fn run(args: AgentArgs) -> Result<(), CliError> {
    crate::agent::sys::purge_freed_memory_at_once();
    let token = match &args.token_file {
        Some(p) => {
            let t = crate::error::read_input(p)?.trim().to_string();
            if t.is_empty() {
                return Err(CliError::BadInput(format!(
                    "--token-file {}: the file is empty",
                    p.display()
                )));
            }
            Some(t)
        }
        None => None,
    };
    server::check_listen(
        args.listen,
        token.is_some(),
        args.tls_cert.is_some(),
        args.insecure,
    )
    .map_err(CliError::BadInput)?;
    let mut cfg = Config::new(args.listen, token.as_deref());
    cfg.allowed_origins = args.allow_origin.clone();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls = Some(server::tls_config(cert, key).map_err(CliError::BadInput)?);
    }
    let scheme = if cfg.tls.is_some() { "wss" } else { "ws" };

    let kube_creds = match (&args.kubeconfig, args.in_cluster) {
        (Some(p), _) => Some(kube::client::from_kubeconfig(p).map_err(CliError::BadInput)?),
        (None, true) => Some(kube::client::in_cluster().map_err(CliError::BadInput)?),
        (None, false) => None,
    };
    let sys: Arc<dyn Sys> = Arc::new(HostSys {
        netns: args.netns.clone(),
    });
    let node = json!({ "name": node_name(), "netns": args.netns });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("tokio runtime: {e}")))?;
    rt.block_on(async move {
        let s = sys.clone();
        let first = tokio::task::spawn_blocking(move || collect(s.as_ref(), &Default::default()))
            .await
            .map_err(|e| CliError::Internal(format!("first poll: {e}")))?;
        let hub = Hub::new(node, first);
        let (addr, server) = server::bind(args.listen, hub.clone(), cfg)
            .await
            .map_err(|e| CliError::BadInput(format!("--listen {}: {e}", args.listen)))?;
        println!("listening on {scheme}://{addr}/ws");
        let store = kube_creds.map(|creds| {
            let store = Arc::new(Mutex::new(kube::Store::default()));
            for r in kube::Resource::ALL {
                tokio::spawn(kube::client::run(
                    creds.clone(),
                    r,
                    store.clone(),
                    Duration::from_secs(5),
                ));
            }
            store
        });
        tokio::spawn(poll_loop(
            hub,
            sys,
            store,
            args.interval,
            std::future::pending(),
        ));
        server
            .await
            .map_err(|e| CliError::Internal(format!("server: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("inf").is_err());
    }
}
