//! The agent's only contact with the node: running read-only dump tools. Everything else in the
//! agent works on the captured text, so tests feed it recorded output through [`Sys`].

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

// Links mimalloc's C library into every binary that uses this module, for `mi_collect` below.
use mimalloc as _;

/// Why a tool gave no usable output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The program is not installed (not on PATH). Reported as "absent", not as an error.
    Missing(String),
    /// The kernel lacks the feature the tool reads (e.g. `ip_vs` not loaded). Also "absent".
    Unsupported(String),
    /// It ran and failed, or its output was unusable.
    Failed(String),
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::Missing(m) | ToolError::Unsupported(m) | ToolError::Failed(m) => {
                f.write_str(m)
            }
        }
    }
}

/// Runs one read-only command and returns its stdout.
pub trait Sys: Send + Sync {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, ToolError>;

    /// [`Sys::run`], with the output also handed over while the tool is still writing it, so a
    /// reader can work on it in step with the tool instead of after it: after each piece that
    /// arrives, `each` gets every piece so far, the new one last. A piece is whole lines: it
    /// ends with `\n`, except the output's last piece when the output does not. Joined, the
    /// pieces are the output, which is also the result. On an error `each` may have seen a part
    /// of the output, which is then to be discarded.
    ///
    /// By default (recorded outputs in tests and benches) the whole output is one piece.
    fn run_streamed(
        &self,
        program: &str,
        args: &[&str],
        each: &mut dyn FnMut(&[String]),
    ) -> Result<Vec<String>, ToolError> {
        let text = self.run(program, args)?;
        each(std::slice::from_ref(&text));
        Ok(vec![text])
    }
}

/// The output of [`Sys::run_streamed`] as one string (moved, not copied, when it is one piece).
pub fn joined(mut pieces: Vec<String>) -> String {
    if pieces.len() == 1 {
        return pieces.pop().unwrap_or_default();
    }
    let mut out = String::with_capacity(pieces.iter().map(String::len).sum());
    // Each piece is freed as soon as it is copied: at most the output plus one piece resident.
    for p in pieces {
        out.push_str(&p);
    }
    out
}

/// The programs the agent may run, with the only arguments it passes. Nothing here writes
/// kernel state: `-save`/`-S`/`-L`/`list` are dumps.
pub const READ_ONLY_COMMANDS: &[(&str, &[&str])] = &[
    ("iptables-save", &[]),
    ("ip6tables-save", &[]),
    ("ipvsadm", &["-Sn"]),
    ("ipset", &["save"]),
    ("nft", &["-j", "list", "chains"]),
    ("conntrack", &["-L", "-f", "ipv4"]),
    ("conntrack", &["-L", "-f", "ipv6"]),
    ("ip", &["-j", "addr"]),
];

/// Upper bound on one tool's output. A node with 10k Services has ~320k iptables rules, about
/// 50 MB of `iptables-save`; beyond this the part is reported as an error instead of growing
/// the agent without bound.
pub const MAX_OUTPUT: usize = 256 << 20;

/// The real node (or one named network namespace, entered with `ip netns exec`).
#[derive(Debug, Clone, Default)]
pub struct HostSys {
    pub netns: Option<String>,
}

/// Kernel answers that mean "this feature is not there" rather than "something broke":
/// ipvsadm without `ip_vs` ("Can't initialize ipvs: Protocol not available"), ipset without
/// `ip_set` ("Kernel error received: ipset protocol error" on some kernels), conntrack without
/// `nf_conntrack_netlink`, and ip6tables on a kernel built without IPv6 netfilter.
fn looks_unsupported(stderr: &str) -> bool {
    [
        "Protocol not available",
        "Address family not supported",
        "ipset protocol error",
        "Protocol not supported",
        "can't initialize ip6tables",
        "Table does not exist",
    ]
    .iter()
    .any(|p| stderr.contains(p))
}

fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| is_executable(&d.join(program)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl HostSys {
    /// Runs `program args` (if it is on the read-only list) and gives its stdout, bounded at
    /// [`MAX_OUTPUT`] + 1 bytes, to `read`, which returns what it made of it and how many bytes
    /// it read; then the checks every output gets: its size, the exit status, stderr's reason.
    fn read_with<T>(
        &self,
        program: &str,
        args: &[&str],
        read: impl FnOnce(&mut (dyn Read + Send)) -> std::io::Result<(T, usize)>,
    ) -> Result<T, ToolError> {
        if !READ_ONLY_COMMANDS
            .iter()
            .any(|(p, a)| *p == program && *a == args)
        {
            return Err(ToolError::Failed(format!(
                "{program} {}: not on the agent's read-only list",
                args.join(" ")
            )));
        }
        // Checked here rather than from the spawn error: under `ip netns exec` a missing program
        // is just exit status 255 from `ip`.
        if !on_path(program) {
            return Err(ToolError::Missing(format!("{program} is not installed")));
        }
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C");
        let shown = format!("{program} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| ToolError::Failed(format!("{shown}: {e}")))?;
        let mut stderr_pipe = child.stderr.take();
        // stderr is drained on its own thread so a chatty tool cannot block on a full pipe while
        // we read stdout.
        let err_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = stderr_pipe.as_mut() {
                let _ = p.take(64 << 10).read_to_end(&mut s);
            }
            s
        });
        let read = match child.stdout.take() {
            Some(p) => read(&mut p.take(MAX_OUTPUT as u64 + 1)),
            None => read(&mut std::io::empty()),
        };
        if read.as_ref().is_ok_and(|(_, n)| *n > MAX_OUTPUT) {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| ToolError::Failed(format!("{shown}: {e}")))?;
        let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default())
            .trim()
            .to_string();
        let (out, n) =
            read.map_err(|e| ToolError::Failed(format!("{shown}: reading output: {e}")))?;
        if n > MAX_OUTPUT {
            return Err(ToolError::Failed(format!(
                "{shown}: output larger than {MAX_OUTPUT} bytes"
            )));
        }
        if !status.success() {
            let msg = format!("{shown}: {status}: {stderr}");
            return Err(if looks_unsupported(&stderr) {
                ToolError::Unsupported(msg)
            } else {
                ToolError::Failed(msg)
            });
        }
        Ok(out)
    }
}

impl Sys for HostSys {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, ToolError> {
        let out = self.read_with(program, args, |r| {
            read_all(r).map(|o| {
                let n = o.len();
                (o, n)
            })
        })?;
        String::from_utf8(out).map_err(|e| {
            ToolError::Failed(format!(
                "{program} {}: output is not UTF-8: {e}",
                args.join(" ")
            ))
        })
    }

    fn run_streamed(
        &self,
        program: &str,
        args: &[&str],
        each: &mut dyn FnMut(&[String]),
    ) -> Result<Vec<String>, ToolError> {
        let pieces = self.read_with(program, args, |r| read_pieces(r, each))?;
        pieces.map_err(|at| {
            ToolError::Failed(format!(
                "{program} {}: output is not UTF-8 (at byte {at})",
                args.join(" ")
            ))
        })
    }
}

/// Size of the pieces [`read_pieces`] hands over. Small, because what is left to do when the
/// tool exits is the last piece: 256 KB is ~3 ms of fingerprint and parse.
pub const PIECE: usize = 256 << 10;

/// Pieces of `r` (see [`Sys::run_streamed`]), each handed to `each` (with the earlier ones) as
/// soon as it is read, and the number of bytes read. A piece is [`PIECE`] bytes read, cut after
/// its last `\n` (the rest starts the next piece; a line longer than a piece grows it). A piece
/// that is not UTF-8 stops the handing over and makes the result `Err(offset of the first bad
/// byte)`; the rest is still read, to its end or the caller's bound.
///
/// `r` is read on a thread of its own and `each` runs on the caller's: were `each` between two
/// reads, the tool would stop writing whenever the pipe (64 KB) filled during `each`, so tool and
/// reader would take turns instead of running at once (measured at 10k Services: the streamed
/// read then took the tool's time plus the whole parse's).
pub fn read_pieces(
    r: impl Read + Send,
    each: &mut dyn FnMut(&[String]),
) -> std::io::Result<(Result<Vec<String>, usize>, usize)> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            cut_pieces(r, &mut |p| {
                // The receiver only goes away after this thread is joined.
                let _ = tx.send(p);
            })
        });
        let mut pieces = Vec::new();
        for p in rx {
            pieces.push(p);
            each(&pieces);
        }
        let (bad, n) = reader
            .join()
            .map_err(|_| std::io::Error::other("output reader panicked"))??;
        Ok((bad.map_or(Ok(pieces), Err), n))
    })
}

/// [`read_pieces`]' reading: sends each piece, returns where the output stopped being UTF-8 (if
/// it did) and its length.
fn cut_pieces(
    mut r: impl Read,
    send: &mut dyn FnMut(String),
) -> std::io::Result<(Option<usize>, usize)> {
    let mut bad = None;
    let mut done = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE);
    loop {
        let room = buf.capacity() - buf.len();
        let n = (&mut r).take(room as u64).read_to_end(&mut buf)?;
        let end = n < room;
        let cut = if end {
            buf.len()
        } else {
            match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => {
                    // No line ends in this piece yet: make room for the rest of the line.
                    buf.reserve(buf.capacity());
                    continue;
                }
            }
        };
        // `\n` is never part of a multibyte character, so a cut after it leaves whole ones.
        let rest = buf.split_off(cut);
        let len = buf.len();
        if bad.is_none() && len > 0 {
            match String::from_utf8(buf) {
                Ok(s) => send(s),
                Err(e) => bad = Some(done + e.utf8_error().valid_up_to()),
            }
        }
        done += len;
        if end {
            break;
        }
        buf = Vec::with_capacity(PIECE.max(rest.len() * 2));
        buf.extend_from_slice(&rest);
    }
    Ok((bad, done))
}

/// Pieces a tool's output is read in. [`Read::read_to_end`] doubles one buffer instead: a 34 MB
/// dump ends in a 64 MB buffer, after a 32 MB one it was copied from and 32 MB of smaller ones
/// before that, all touched within one poll.
const READ_CHUNK: usize = 4 << 20;

/// All of `r`, in one buffer of exactly its size: read in [`READ_CHUNK`] pieces, then joined,
/// each piece freed as soon as it is copied. At most the output plus one piece is resident.
pub fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut c = Vec::with_capacity(READ_CHUNK);
        if (&mut r).take(READ_CHUNK as u64).read_to_end(&mut c)? == 0 {
            break;
        }
        chunks.push(c);
    }
    if chunks.len() <= 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for c in chunks {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Freed memory stays resident unless the allocator is told to hand it back. The `proxyscope`
/// binary allocates with mimalloc (`src/alloc.rs`), which keeps freed pages for a purge delay
/// that only passes on later allocator activity in the same thread, and a poll's big buffers are
/// freed on reader threads that exit right after: measured on a 10k-Service dump (the `agent`
/// bench), the process sat at ~200 MB between unchanged polls for a 34 MB snapshot.
/// `mi_collect(true)` purges the freed pages of every heap now. glibc's `malloc_trim` does the
/// same for the test and bench binaries, which keep the system allocator.
pub fn release_freed_memory() {
    unsafe extern "C" {
        /// mimalloc's `void mi_collect(bool force)` (mimalloc.h, every major version).
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect takes a plain bool and only walks mimalloc's own free lists; the
    // library is linked through the `mimalloc` crate (used above) whichever allocator is global.
    unsafe {
        mi_collect(true);
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Has mimalloc return freed pages to the OS as soon as they are free, instead of after its
/// purge delay (10 ms, times 10 for arena memory), which only counts down while the freeing
/// thread keeps allocating: the agent frees tens of MB at the end of a poll and then idles, so
/// without this the pages stay resident until the next poll. Measured by the `agent` bench on a
/// 10k-Service dump with one client: 41–47 MB between polls with the default delay, 31–37 MB
/// without. An explicit `MIMALLOC_PURGE_DELAY` in the environment is left to decide.
pub fn purge_freed_memory_at_once() {
    use std::ffi::{c_int, c_long};
    unsafe extern "C" {
        /// mimalloc's `int mi_version(void)`: major * 10000 + minor * 100 + patch.
        fn mi_version() -> c_int;
        /// mimalloc's `void mi_option_set(mi_option_t option, long value)`.
        fn mi_option_set(option: c_int, value: c_long);
    }
    /// `mi_option_purge_delay`'s place in `mi_option_t`, the same in mimalloc 2.x and 3.x.
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: both take and return plain integers; the library is linked through the
    // `mimalloc` crate (see `release_freed_memory`).
    unsafe {
        if (20000..40000).contains(&mi_version()) {
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}
