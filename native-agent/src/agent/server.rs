//! HTTP and websocket front: `/ws`, `/snapshot`, `/healthz`, `/version`.
//!
//! Safety rules (issue 6): loopback by default; any other address needs a token and TLS
//! (`--tls-cert`/`--tls-key`, rustls) or an explicit `--insecure`. Browsers are kept out by two checks:
//! the websocket `Origin` must be allowed, and on loopback the `Host` must be a loopback name so
//! a DNS-rebinding page cannot read `/snapshot` as "same origin".
//!
//! The websocket upgrade is done here rather than by axum's `WebSocketUpgrade`: axum's socket
//! only sends whole messages, and tungstenite formats a whole message into a write buffer that
//! keeps its size for the life of the connection (~35 MB per client on a 10k-Service node).
//! Messages go out as fragments of at most [`wire::FRAGMENT`] bytes instead (RFC 6455 §5.4).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::hub::{Hub, Start};
use super::wire::{self, Json};

/// Clients send nothing we act on; anything big is hostile.
pub const MAX_CLIENT_MESSAGE: usize = 4 << 10;

#[derive(Debug, Clone)]
pub struct Config {
    /// SHA-256 of the token; compared in constant time against the hash of what is presented.
    pub token_hash: Option<[u8; 32]>,
    /// Exact `Origin` values accepted on `/ws` besides loopback pages on a loopback agent.
    pub allowed_origins: Vec<String>,
    pub loopback: bool,
    pub max_clients: usize,
    /// A client that cannot take one message in this long is dropped.
    pub send_timeout: Duration,
    /// Serve HTTPS / `wss://` with this certificate instead of clear text.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Config {
    pub fn new(listen: SocketAddr, token: Option<&str>) -> Config {
        Config {
            token_hash: token.map(hash),
            allowed_origins: Vec::new(),
            loopback: listen.ip().is_loopback(),
            max_clients: 64,
            send_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether the agent may listen on `listen` with these flags; the error says what is missing.
pub fn check_listen(
    listen: SocketAddr,
    has_token: bool,
    tls: bool,
    insecure: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if !has_token {
        return Err(format!(
            "--listen {listen}: a non-loopback address needs --token-file (anyone who can reach \
             the port would read the node's rules and connections)"
        ));
    }
    if !tls && !insecure {
        return Err(format!(
            "--listen {listen}: a non-loopback address needs TLS (--tls-cert FILE --tls-key FILE); \
             pass --insecure to send the token and the node's state in clear text anyway"
        ));
    }
    Ok(())
}

/// A server TLS configuration from PEM files: the certificate chain (leaf first) and its
/// private key (PKCS#8, PKCS#1 or SEC1). Errors name the file and what is wrong with it.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE block in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    // The server speaks HTTP/1.1 only (websocket upgrades are HTTP/1.1).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// At most this many TLS handshakes in progress; each must finish within [`HANDSHAKE_TIMEOUT`].
const MAX_HANDSHAKES: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP, completes TLS handshakes on their own tasks (a client that stalls mid-handshake
/// must not hold up everyone else's accept), and hands finished streams to axum.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(tcp: TcpListener, tls: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, done) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    if let Ok(Ok(tls)) = hs {
                        let _ = done.send((tls, peer)).await;
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (the listener is gone): nothing more will arrive.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

struct App {
    hub: Arc<Hub>,
    cfg: Config,
    clients: AtomicUsize,
}

#[derive(Deserialize)]
struct Params {
    token: Option<String>,
    /// Resume: the last revision the client applied...
    since: Option<u64>,
    /// ...and the agent instance that numbered it.
    instance: Option<String>,
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request was turned away, before any node data was touched.
type Refusal = (StatusCode, &'static str);

fn deny(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

impl App {
    /// Token (header `Authorization: Bearer T` or, for browsers that cannot set headers on a
    /// websocket, `?token=T`) and Host checks shared by every data endpoint.
    fn admit(&self, headers: &HeaderMap, params: &Params) -> Result<(), Refusal> {
        if self.cfg.loopback {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !is_loopback_name(host_of(host)) {
                return Err((StatusCode::FORBIDDEN, "Host must be a loopback name"));
            }
        }
        if let Some(want) = &self.cfg.token_hash {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .or(params.token.as_deref());
            let ok = given.is_some_and(|g| bool::from(hash(g.trim()).ct_eq(want)));
            if !ok {
                return Err((StatusCode::UNAUTHORIZED, "missing or wrong token"));
            }
        }
        Ok(())
    }

    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            // Not a browser: the token (when required) is the guard.
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.cfg.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        self.cfg.loopback && authority.is_some_and(|a| is_loopback_name(host_of(a)))
    }
}

async fn snapshot(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if let Err((status, why)) = app.admit(&headers, &params) {
        return deny(status, why);
    }
    // Streamed in the same pieces as a websocket message: the snapshot is held packed, and a
    // client that reads slowly holds one piece of it, not a copy.
    let snap = app.hub.snapshot();
    let len = snap.len();
    let body = Body::from_stream(futures_util::stream::iter(wire::Fragments::new(snap)));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        body,
    )
        .into_response()
}

/// Whether a header's comma-separated tokens include `token` (any case).
fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The client's `Sec-WebSocket-Key` when the request is a websocket handshake (RFC 6455 §4.2.1;
/// the same checks and answers as axum's `WebSocketUpgrade`).
fn handshake_key(headers: &HeaderMap) -> Result<&HeaderValue, Refusal> {
    if !header_has(headers, header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !header_has(headers, header::UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Upgrade` header did not include 'websocket'",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "`Sec-WebSocket-Version` header did not include '13'",
        ));
    }
    headers.get(header::SEC_WEBSOCKET_KEY).ok_or((
        StatusCode::BAD_REQUEST,
        "`Sec-WebSocket-Key` header missing",
    ))
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn ws(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    mut req: Request,
) -> Response {
    let key = match handshake_key(&headers) {
        Ok(k) => k,
        Err((status, why)) => return deny(status, why),
    };
    if let Err((status, why)) = app.admit(&headers, &params) {
        return deny(status, why);
    }
    if !app.origin_ok(&headers) {
        return deny(StatusCode::FORBIDDEN, "Origin not allowed");
    }
    let Some(upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return deny(
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded",
        );
    };
    // Reserve a slot before upgrading so a flood of connections is refused with a status code.
    if app.clients.fetch_add(1, Ordering::SeqCst) >= app.cfg.max_clients {
        app.clients.fetch_sub(1, Ordering::SeqCst);
        return deny(StatusCode::SERVICE_UNAVAILABLE, "too many clients");
    }
    let slot = Slot(app.clone());
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await;
        client(socket, &slot.0, params.since, params.instance.as_deref()).await;
        drop(slot);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| deny(StatusCode::INTERNAL_SERVER_ERROR, "handshake response"))
}

/// Frees a client slot however the connection ends (including a failed upgrade).
struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a message was not delivered.
enum Undelivered {
    /// Too slow, gone, or a protocol error: just drop the connection.
    Client,
    /// The message's stored blocks are damaged: tell the client before dropping it.
    Damaged,
}

/// One text message as fragments of at most [`wire::FRAGMENT`] bytes, each inflated just before
/// it is written; `limit` bounds the whole message, as it did an unfragmented one.
async fn send_json(socket: &mut Socket, msg: &Json, limit: Duration) -> Result<(), Undelivered> {
    let sending = async {
        let mut pieces = msg.fragments().peekable();
        let mut opcode = OpCode::Data(Data::Text);
        loop {
            let piece = match pieces.next() {
                Some(Ok(p)) => p,
                Some(Err(_)) => return Err(Undelivered::Damaged),
                // Only an empty message has no piece at all: it is one empty frame.
                None => Default::default(),
            };
            let fin = pieces.peek().is_none();
            socket
                .send(Message::Frame(Frame::message(piece, opcode, fin)))
                .await
                .map_err(|_| Undelivered::Client)?;
            if fin {
                return Ok(());
            }
            opcode = OpCode::Data(Data::Continue);
        }
    };
    tokio::time::timeout(limit, sending)
        .await
        .unwrap_or(Err(Undelivered::Client))
}

async fn close(socket: &mut Socket, code: CloseCode, reason: String, limit: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(limit, socket.send(Message::Close(Some(frame)))).await;
}

async fn deliver(socket: &mut Socket, msg: &Json, limit: Duration) -> bool {
    match send_json(socket, msg, limit).await {
        Ok(()) => true,
        Err(Undelivered::Client) => false,
        Err(Undelivered::Damaged) => {
            // 1011 = internal error. Part of the message may be out already: the close tells the
            // client not to use it.
            close(socket, CloseCode::Error, wire::Damaged.to_string(), limit).await;
            false
        }
    }
}

async fn client(mut socket: Socket, app: &App, since: Option<u64>, instance: Option<&str>) {
    let (start, mut rx) = app.hub.resume(since, instance);
    let limit = app.cfg.send_timeout;
    let first = match start {
        Start::Snapshot(snap) => vec![snap],
        Start::Resume(hello, missed) => std::iter::once(hello).chain(missed).collect(),
    };
    for m in first {
        if !deliver(&mut socket, &m, limit).await {
            return;
        }
    }
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Ok(diff) => {
                    if !deliver(&mut socket, &diff, limit).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // 1008 = policy violation; the reason tells the client to resync.
                    let reason = format!(
                        "too slow: {n} updates missed; reconnect with ?since=REV&instance=ID"
                    );
                    close(&mut socket, CloseCode::Policy, reason, limit).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            m = socket.next() => match m {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pings are answered by the library; anything else is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

pub fn router(hub: Arc<Hub>, cfg: Config) -> Router {
    let app = Arc::new(App {
        hub,
        cfg,
        clients: AtomicUsize::new(0),
    });
    Router::new()
        .route("/ws", get(ws))
        .route("/snapshot", get(snapshot))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/version",
            get(|| async {
                let v = serde_json::json!({
                    "agent": env!("CARGO_PKG_VERSION"),
                    "snapshot_version": super::snapshot::VERSION,
                });
                ([(header::CONTENT_TYPE, "application/json")], v.to_string())
            }),
        )
        .with_state(app)
}

/// The running server, resolving when it stops.
pub type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Bind first (tests use port 0), then hand back the server future; TLS when `cfg.tls` is set.
pub async fn bind(
    addr: SocketAddr,
    hub: Arc<Hub>,
    cfg: Config,
) -> std::io::Result<(SocketAddr, Serving)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let tls = cfg.tls.clone();
    let app = router(hub, cfg);
    Ok(match tls {
        Some(tls) => {
            let l = TlsListener::new(listener, tls)?;
            (local, Box::pin(async move { axum::serve(l, app).await }))
        }
        None => (
            local,
            Box::pin(async move { axum::serve(listener, app).await }),
        ),
    })
}
