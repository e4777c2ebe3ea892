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

impl Sys for HostSys {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, ToolError> {
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
        let read = child
            .stdout
            .take()
            .map_or(Ok(Vec::new()), |p| read_all(p.take(MAX_OUTPUT as u64 + 1)));
        if read.as_ref().is_ok_and(|o| o.len() > MAX_OUTPUT) {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| ToolError::Failed(format!("{shown}: {e}")))?;
        let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default())
            .trim()
            .to_string();
        let out = read.map_err(|e| ToolError::Failed(format!("{shown}: reading output: {e}")))?;
        if out.len() > MAX_OUTPUT {
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
        String::from_utf8(out)
            .map_err(|e| ToolError::Failed(format!("{shown}: output is not UTF-8: {e}")))
    }
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
