//! One run of the binary under a virtual-memory limit and a deadline, with its peak memory.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `ulimit -v` of each run: a config that makes the binary allocate by its sizes is stopped
/// here, not by the machine (a normal run of these models maps under 100 MB).
pub const VM_LIMIT_KIB: u64 = 6 * 1024 * 1024;
/// A run of these models takes well under a second; past this it is taken as hung.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub enum Ending {
    Exited(i32),
    Signalled(i32),
    TimedOut,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Ending::Exited(c) => write!(f, "exit status {c}"),
            Ending::Signalled(s) => write!(f, "signal {s}"),
            Ending::TimedOut => write!(f, "killed at the deadline of {DEADLINE:?}"),
        }
    }
}

pub struct Ran {
    pub ending: Ending,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set of the child, from wait4.
    pub max_rss_kib: u64,
}

/// `arborist ARGS` in `cwd`, with RUST_BACKTRACE set so that a candle backtrace that leaks
/// into an error shows as extra lines.
pub fn run(args: &[String], cwd: &Path) -> Ran {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {VM_LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_arborist"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("ARBORIST_LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Reaped by wait4 below, which Child::wait would not let us call.
    #[allow(clippy::zombie_processes)]
    let mut child = c.spawn().expect("spawn sh");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let read_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let read_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut timed_out = false;
    // wait4 rather than Child::wait: it also gives the child's own peak memory.
    let (status, rusage) = loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, filled in by wait4.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if timed_out { 0 } else { libc::WNOHANG };
        // SAFETY: waits only for our own child, which nothing else reaps.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            break (status, ru);
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            timed_out = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let ending = if timed_out {
        Ending::TimedOut
    } else if libc::WIFEXITED(status) {
        Ending::Exited(libc::WEXITSTATUS(status))
    } else {
        Ending::Signalled(libc::WTERMSIG(status))
    };
    Ran {
        ending,
        stdout: String::from_utf8_lossy(&read_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&read_err.join().unwrap()).into_owned(),
        max_rss_kib: rusage.ru_maxrss.max(0) as u64,
    }
}
