//! Backends: TCP and UDP listeners inside the pods namespace that answer with the address they
//! were reached at and the peer they saw, e.g. `10.244.0.10:8080 192.168.0.100:40312`.
//! The first half tells the prober which backend the kernel chose (the DNAT result); the second
//! tells whether the packet was masqueraded on the way.

use super::sys::{self, SysError};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a backend answers: the address it was reached at and the peer it saw.
pub fn reply_text(local: SocketAddr, peer: SocketAddr) -> String {
    format!("{local} {peer}\n")
}

/// Parse a backend's reply (see [`reply_text`]).
pub fn parse_reply(text: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut it = text.split_whitespace();
    let local = it.next()?.parse().ok()?;
    let peer = it.next()?.parse().ok()?;
    Some((local, peer))
}

/// Listeners running on one thread inside a namespace; stopped and joined on drop.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listeners {
    /// Bind TCP and UDP on every address in `addrs` inside namespace `ns` and serve until dropped.
    /// Returns once every socket is bound (or with the first bind error).
    pub fn start(ns: &str, addrs: &[SocketAddr]) -> Result<Listeners, SysError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), SysError>>();
        let ns_name = ns.to_owned();
        let addrs = addrs.to_vec();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let bound = sys::enter_netns(&ns_name).and_then(|()| bind_all(&addrs));
            match bound {
                Ok((tcp, udp)) => {
                    let _ = tx.send(Ok(()));
                    serve(&tcp, &udp, &stop2);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let started = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| SysError(format!("listeners in {ns} did not start")))?;
        let listeners = Listeners {
            stop,
            thread: Some(thread),
        };
        started.map(|()| listeners)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_all(addrs: &[SocketAddr]) -> Result<(Vec<TcpListener>, Vec<UdpSocket>), SysError> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for a in addrs {
        let t = TcpListener::bind(a).map_err(|e| SysError(format!("bind tcp {a}: {e}")))?;
        t.set_nonblocking(true)
            .map_err(|e| SysError(format!("{a}: {e}")))?;
        tcp.push(t);
        let u = UdpSocket::bind(a).map_err(|e| SysError(format!("bind udp {a}: {e}")))?;
        u.set_nonblocking(true)
            .map_err(|e| SysError(format!("{a}: {e}")))?;
        udp.push(u);
    }
    Ok((tcp, udp))
}

fn serve(tcp: &[TcpListener], udp: &[UdpSocket], stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = tcp
        .iter()
        .map(|s| s.as_raw_fd())
        .chain(udp.iter().map(|s| s.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a valid array of pollfd for the sockets we own; 50 ms bounds the
        // time to notice `stop`.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            continue;
        }
        for (i, pfd) in fds.iter_mut().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            pfd.revents = 0;
            if let Some(l) = tcp.get(i) {
                while let Ok((mut stream, peer)) = l.accept() {
                    let local = stream.local_addr().unwrap_or(peer);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
                    let _ = stream.write_all(reply_text(local, peer).as_bytes());
                }
            } else if let Some(u) = udp.get(i - tcp.len()) {
                while let Ok((_, peer)) = u.recv_from(&mut buf) {
                    let local = u.local_addr().expect("bound socket");
                    let _ = u.send_to(reply_text(local, peer).as_bytes(), peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_round_trips_v4_and_v6() {
        let l: SocketAddr = "10.244.0.10:8080".parse().unwrap();
        let p: SocketAddr = "[2001:db8::100]:40000".parse().unwrap();
        assert_eq!(parse_reply(&reply_text(l, p)), Some((l, p)));
        assert_eq!(parse_reply("garbage"), None);
    }
}
