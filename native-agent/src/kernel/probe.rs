//! Send one real TCP connect or UDP datagram from a client namespace and classify what the
//! kernel did with it.

use super::listen::parse_reply;
use super::sys::{self, SysError};
use proxyscope_core::trace::Proto;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A backend answered: the address it was reached at and the source address it saw.
    Delivered {
        backend: SocketAddr,
        seen_src: SocketAddr,
        local_port: u16,
    },
    /// An active refusal: TCP RST or ICMP port-unreachable (iptables `-j REJECT`).
    Refused { local_port: u16 },
    /// Another ICMP error (host/net unreachable, prohibited).
    Unreachable { error: String, local_port: u16 },
    /// Nothing came back within the timeout (`-j DROP`, or no route anywhere).
    Timeout { local_port: u16 },
}

impl Observed {
    /// Ephemeral port the client used (to find the flow in conntrack).
    pub fn local_port(&self) -> u16 {
        match self {
            Observed::Delivered { local_port, .. }
            | Observed::Refused { local_port }
            | Observed::Unreachable { local_port, .. }
            | Observed::Timeout { local_port } => *local_port,
        }
    }

    /// Short word for tables: the backend `ip:port`, `REJECT`, `DROP` or `UNREACH`.
    pub fn summary(&self) -> String {
        match self {
            Observed::Delivered { backend, .. } => backend.to_string(),
            Observed::Refused { .. } => "REJECT".into(),
            Observed::Unreachable { .. } => "UNREACH".into(),
            Observed::Timeout { .. } => "DROP".into(),
        }
    }
}

/// How long a probe waits before asking `silent_by_rule` whether the kernel already counted a
/// dropping rule for it. Replies on these veths take well under a millisecond; a reply later
/// than this only costs the full timeout, never a wrong answer.
pub const EARLY_WAIT: Duration = Duration::from_millis(20);

/// Send one probe from inside namespace `ns`, from address `src` (an ephemeral port), to
/// `dst`, waiting at most `timeout` per step.
///
/// `silent_by_rule`, when given, is asked once after [`EARLY_WAIT`] without an answer (with the
/// probe's local port): `true` (e.g. a `-j DROP` rule counted this packet) ends the wait there
/// as silence. Silence is then the kernel's counters' word, not the clock's; without that
/// evidence the probe waits the whole `timeout` as before.
pub fn probe(
    ns: &str,
    src: IpAddr,
    proto: Proto,
    dst: SocketAddr,
    timeout: Duration,
    silent_by_rule: Option<&(dyn Fn(u16) -> bool + Sync)>,
) -> Result<Observed, SysError> {
    sys::in_netns(ns, || match proto {
        Proto::Udp => probe_udp(src, dst, timeout, silent_by_rule),
        _ => probe_tcp(src, dst, timeout, silent_by_rule),
    })?
}

/// poll(2) one descriptor for `events` for at most `wait`; true when it is ready.
fn poll_fd(fd: i32, events: i16, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a socket we own.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(60_000) as i32) };
        if n > 0 {
            return true;
        }
        // EINTR: poll again for what is left; 0: timed out.
        if n == 0 || left.is_zero() {
            return false;
        }
    }
}

fn classify_error(e: &std::io::Error, local_port: u16) -> Option<Observed> {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => {
            Some(Observed::Refused { local_port })
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Some(Observed::Timeout { local_port }),
        ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::PermissionDenied => Some(Observed::Unreachable {
            error: e.to_string(),
            local_port,
        }),
        _ => None,
    }
}

fn probe_tcp(
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
    silent_by_rule: Option<&(dyn Fn(u16) -> bool + Sync)>,
) -> Result<Observed, SysError> {
    // std cannot report the local port of a failed connect, so bind first to learn it.
    let domain = if dst.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(|e| SysError(format!("socket: {e}")))?;
    sock.bind(&SocketAddr::new(src, 0).into())
        .map_err(|e| SysError(format!("bind {src}: {e}")))?;
    let local_port = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .unwrap_or(0);
    sock.set_nonblocking(true)
        .map_err(|e| SysError(format!("nonblocking: {e}")))?;
    match sock.connect(&dst.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => {
            return classify_error(&e, local_port)
                .ok_or_else(|| SysError(format!("tcp connect {dst}: {e}")));
        }
    }
    // An ICMP error that arrives while connect() still holds the socket lock is only recorded
    // as a soft error (tcp_v6_err: `sk_err_soft`, counted as LockDroppedIcmps) and the SYN is
    // retried a second later: poll never wakes for it, SO_ERROR reports it. Here the REJECT's
    // ICMPv6 comes back within the same softirq as the SYN, so it always lands there.
    let fd = sock.as_raw_fd();
    let settled = |sock: &socket2::Socket| -> Option<Result<Observed, SysError>> {
        match sock.take_error() {
            Ok(Some(e)) => Some(
                classify_error(&e, local_port)
                    .ok_or_else(|| SysError(format!("tcp connect {dst}: {e}"))),
            ),
            _ => None,
        }
    };
    let early = timeout.min(EARLY_WAIT);
    let mut ready = poll_fd(fd, libc::POLLOUT, early);
    if !ready {
        if let Some(r) = settled(&sock) {
            return r;
        }
        if silent_by_rule.is_some_and(|f| f(local_port)) {
            return Ok(Observed::Timeout { local_port });
        }
        ready = poll_fd(fd, libc::POLLOUT, timeout.saturating_sub(early));
    }
    if let Some(r) = settled(&sock) {
        return r;
    }
    if !ready {
        return Ok(Observed::Timeout { local_port });
    }
    sock.set_nonblocking(false)
        .map_err(|e| SysError(format!("blocking: {e}")))?;
    // Close with a RST (linger 0) instead of FIN / last ACK: the harness flushes conntrack
    // between flows, and a teardown segment that the scheduler delays past that flush is
    // picked up as a new connection (nf_conntrack_tcp_loose) that walks the nat table in the
    // middle of the next flow. A RST never starts a conntrack entry.
    sock.set_linger(Some(Duration::ZERO))
        .map_err(|e| SysError(format!("linger: {e}")))?;
    let mut stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| SysError(e.to_string()))?;
    let mut text = String::new();
    match stream.read_to_string(&mut text) {
        Ok(_) => {}
        Err(e) => {
            if let Some(o) = classify_error(&e, local_port) {
                return Ok(o);
            }
            return Err(SysError(format!("tcp read {dst}: {e}")));
        }
    }
    let (backend, seen_src) = parse_reply(&text)
        .ok_or_else(|| SysError(format!("tcp {dst}: unexpected reply {text:?}")))?;
    Ok(Observed::Delivered {
        backend,
        seen_src,
        local_port,
    })
}

fn probe_udp(
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
    silent_by_rule: Option<&(dyn Fn(u16) -> bool + Sync)>,
) -> Result<Observed, SysError> {
    let sock = UdpSocket::bind(SocketAddr::new(src, 0))
        .map_err(|e| SysError(format!("bind {src}: {e}")))?;
    let local_port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
    // IP_RECVERR: report every ICMP error on recv, not only "hard" ones — the upstream router's
    // host/no-route unreachable is "soft" (udp_err / udpv6_err ignore it without RECVERR).
    let on: libc::c_int = 1;
    let (level, opt) = if src.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    };
    // SAFETY: setsockopt with an int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(SysError(format!(
            "IP_RECVERR: {}",
            std::io::Error::last_os_error()
        )));
    }
    // A connected UDP socket is what turns an ICMP port-unreachable into ECONNREFUSED on recv.
    sock.connect(dst)
        .map_err(|e| SysError(format!("udp connect {dst}: {e}")))?;
    let early = timeout.min(EARLY_WAIT);
    sock.set_read_timeout(Some(early))
        .map_err(|e| SysError(e.to_string()))?;
    match sock.send(b"proxyscope probe\n") {
        Ok(_) => {}
        // A locally generated datagram that netfilter drops in OUTPUT fails send() with EPERM,
        // whether the rule was DROP or REJECT. REJECT also queues an ICMP port-unreachable on
        // the socket, so the recv below still tells the two apart.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
        Err(e) => {
            return classify_error(&e, local_port)
                .ok_or_else(|| SysError(format!("udp send {dst}: {e}")));
        }
    }
    let mut buf = [0u8; 1500];
    let mut got = sock.recv(&mut buf);
    if let Err(e) = &got
        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    {
        if silent_by_rule.is_some_and(|f| f(local_port)) {
            return Ok(Observed::Timeout { local_port });
        }
        let rest = timeout.saturating_sub(early).max(Duration::from_millis(1));
        sock.set_read_timeout(Some(rest))
            .map_err(|e| SysError(e.to_string()))?;
        got = sock.recv(&mut buf);
    }
    match got {
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            let (backend, seen_src) = parse_reply(&text)
                .ok_or_else(|| SysError(format!("udp {dst}: unexpected reply {text:?}")))?;
            Ok(Observed::Delivered {
                backend,
                seen_src,
                local_port,
            })
        }
        Err(e) => {
            classify_error(&e, local_port).ok_or_else(|| SysError(format!("udp recv {dst}: {e}")))
        }
    }
}
