//! The terminal: raw mode and the alternate screen, and the three ways back out of them:
//! a normal quit (the guard's drop), a panic (the hook), and SIGTERM/SIGHUP/SIGINT (a flag
//! the loop checks every tick, backed by a watchdog that exits the process when the loop
//! does not answer). Logs go to a file, never to the screen.

use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{stdout, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the screen is ours right now (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// How long the UI loop has to notice a termination signal before the watchdog exits the
/// process, and how long the way out (restoring, stopping the workers) may take after that.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(3);
pub const SIGNAL_EXIT_GRACE: Duration = Duration::from_secs(10);

/// The termination signal (0: none yet) and whether the UI loop has seen it.
#[derive(Debug, Default)]
pub struct SignalState {
    signal: Arc<AtomicUsize>,
    acked: AtomicBool,
}

impl SignalState {
    pub fn signal(&self) -> usize {
        self.signal.load(Ordering::SeqCst)
    }
}

/// The watchdog's rule: the exit status to leave with now (128 + the signal, as a shell
/// reports a process killed by it), or None while the loop still has time. `since` is how
/// long ago the watchdog first saw the signal.
pub fn watchdog_verdict(signal: usize, acked: bool, since: Duration) -> Option<i32> {
    let grace = if acked {
        SIGNAL_EXIT_GRACE
    } else {
        SIGNAL_GRACE
    };
    (signal != 0 && since >= grace).then(|| 128 + signal as i32)
}

/// Exit the process when a termination signal stays unanswered. The UI loop can be stuck
/// where it never sees the flag (crossterm spinning on a hung-up tty); the session file is
/// append-only and synced after every event, so exiting is as safe as kill -9.
fn start_watchdog(state: Arc<SignalState>) {
    let spawned = std::thread::Builder::new()
        .name("tui-watchdog".into())
        .spawn(move || {
            let mut seen: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let sig = state.signal();
                if sig == 0 {
                    continue;
                }
                let since = seen.get_or_insert_with(Instant::now).elapsed();
                let acked = state.acked.load(Ordering::SeqCst);
                if let Some(code) = watchdog_verdict(sig, acked, since) {
                    tracing::error!("signal {sig} unanswered for {since:?}: exiting with {code}");
                    // Restoring writes to the terminal, which may block (a stuck UI
                    // thread holding stdout, a terminal that stopped reading): bounded.
                    let (tx, rx) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        restore();
                        use std::io::Write;
                        let _ = writeln!(
                            std::io::stderr(),
                            "arborist: stopped by signal {sig} (the screen did not answer); \
                             the session file is saved and resumes with --resume"
                        );
                        let _ = tx.send(());
                    });
                    let _ = rx.recv_timeout(Duration::from_millis(500));
                    std::process::exit(code);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no signal watchdog: {e}");
    }
}

pub struct TerminalGuard {
    /// Dropped by hand: see the guard's `Drop`.
    pub term: std::mem::ManuallyDrop<Term>,
    signals: Arc<SignalState>,
}

/// Take over the terminal. Install the panic hook and the signal flag first, so nothing
/// after this point can leave the terminal raw.
pub fn enter(mouse: bool) -> Result<TerminalGuard> {
    install_panic_hook();
    let signals = Arc::new(SignalState::default());
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register_usize(sig, Arc::clone(&signals.signal), sig as usize)
            .context("cannot install the signal handler")?;
    }
    start_watchdog(Arc::clone(&signals));
    enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    ACTIVE.store(true, Ordering::SeqCst);
    // Bracketed paste: a paste arrives as one event, not as keys that act as commands.
    execute!(stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
    if mouse {
        execute!(stdout(), EnableMouseCapture)?;
    }
    let term = Terminal::new(CrosstermBackend::new(stdout()))?;
    Ok(TerminalGuard {
        term: std::mem::ManuallyDrop::new(term),
        signals,
    })
}

/// Leave raw mode and the alternate screen (idempotent; safe from the panic hook).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            stdout(),
            DisableMouseCapture,
            DisableBracketedPaste,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
        let _ = disable_raw_mode();
    }
}

impl TerminalGuard {
    /// A termination signal arrived. Asking also tells the watchdog that the loop saw it,
    /// so it gives the way out (restoring the terminal, stopping the workers) more time.
    pub fn signalled(&self) -> bool {
        let on = self.signals.signal() != 0;
        if on {
            self.signals.acked.store(true, Ordering::SeqCst);
        }
        on
    }

    /// The termination signal that arrived (0: none).
    pub fn signal(&self) -> i32 {
        self.signals.signal() as i32
    }

    /// ctrl-z: raw mode delivers it as a key, so the terminal never suspended the process
    /// (the key did nothing). The shell gets its screen back, the process stops (SIGTSTP)
    /// until `fg`, then the screen is taken over again and drawn whole.
    pub fn suspend(&mut self, mouse: bool) -> Result<()> {
        restore();
        // SAFETY: raise only sends this process a signal; its default action stops it.
        unsafe {
            libc::raise(libc::SIGTSTP);
        }
        enable_raw_mode().context("cannot switch the terminal back to raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        execute!(stdout(), EnterAlternateScreen, EnableBracketedPaste)?;
        if mouse {
            execute!(stdout(), EnableMouseCapture)?;
        }
        self.term.clear()?;
        Ok(())
    }

    pub fn set_mouse(&mut self, on: bool) -> Result<()> {
        if on {
            execute!(stdout(), EnableMouseCapture)?;
        } else {
            execute!(stdout(), DisableMouseCapture)?;
        }
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        // ratatui's own drop shows the cursor again and prints `Failed to show the cursor`
        // when the terminal is gone (a hang-up); `restore` has shown it already, so the
        // terminal is left undropped then (the process is ending).
        if self.term.show_cursor().is_ok() {
            // SAFETY: dropped once, here, and never used after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.term) };
        }
    }
}

fn install_panic_hook() {
    let _ = UI_THREAD.set(std::thread::current().id());
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = UI_THREAD.get() == Some(&std::thread::current().id());
            if ACTIVE.load(Ordering::SeqCst) && !on_ui {
                // A worker died; the UI keeps the screen and reports the stopped worker.
                tracing::error!("worker thread panicked: {info}");
                return;
            }
            restore();
            previous(info);
        }));
    });
}

/// Where the log goes: $ARBORIST_LOG, else arborist.log beside a live session, or
/// replay.log in Arborist's cache for a read-only replay (which wrote into the folder of
/// the session it only reads until 2026-12-04).
pub enum LogFor<'a> {
    Live(&'a Path),
    Replay,
}

/// Send `tracing` output to a file (see `LogFor`). Returns the path (None when a
/// subscriber was already set), or a warning when the file cannot be written: the TUI's
/// warnings go only to the log, so a silent failure lost them.
pub fn init_logging(owner: LogFor) -> Result<Option<PathBuf>, String> {
    let chosen = std::env::var_os("ARBORIST_LOG").map(PathBuf::from);
    let path = match (&chosen, owner) {
        (Some(p), _) => p.clone(),
        (None, LogFor::Live(session)) => session
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("arborist.log"),
        (None, LogFor::Replay) => crate::runtime::cache_root().join("replay.log"),
    };
    let named = || match &chosen {
        Some(p) => format!("ARBORIST_LOG={}", p.display()),
        None => format!("log {}", path.display()),
    };
    // The session's directory is made for it anyway; a path the user chose is taken as it
    // is (a typo made directories as far up as `/`).
    if chosen.is_none() {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create its directory: {e}", named()))?;
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: cannot write the log: {e}", named()))?;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBORIST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(Mutex::new(LogFile {
            file,
            named: named(),
            failed: false,
        }))
        .with_ansi(false)
        // Its own report of a failed write goes to stderr: over the screen.
        .log_internal_errors(false);
    let set = tracing_subscriber::registry()
        .with(filter)
        .with(log)
        .with(RetryNotices)
        .try_init();
    Ok(set.ok().map(|_| path))
}

/// The latest agent retry's warning, until the screen takes it.
static RETRY_NOTICE: Mutex<Option<String>> = Mutex::new(None);

/// Keeps each agent retry's warning for the status line: the log alone held them, and a
/// rate-limited provider's minutes of waits read "agent is proposing".
struct RetryNotices;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RetryNotices {
    fn on_event(&self, ev: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if ev.metadata().target() != crate::agent::RETRY_TARGET {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        ev.record(&mut m);
        *RETRY_NOTICE.lock().unwrap_or_else(|p| p.into_inner()) = Some(m.0);
    }
}

/// The latest agent retry's warning not yet shown: None when there is none.
pub fn take_retry_notice() -> Option<String> {
    RETRY_NOTICE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// The first failed write to the log (a full disk), until the screen takes it.
static LOG_FAILED: Mutex<Option<String>> = Mutex::new(None);

/// The log file. A failed write is dropped, not retried (the session goes on without its
/// log), and the first one is kept for the status bar.
struct LogFile {
    file: std::fs::File,
    named: String,
    failed: bool,
}

impl std::io::Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.write(buf) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                if !std::mem::replace(&mut self.failed, true) {
                    *LOG_FAILED.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "{}: cannot write the log ({e}); the session goes on, logged no further",
                        self.named
                    ));
                }
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.file.flush();
        Ok(())
    }
}

/// Why the log stopped, once: None before and after.
pub fn take_log_failure() -> Option<String> {
    LOG_FAILED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    // An agent retry's warning reaches the status line once; other warnings do not.
    #[test]
    fn a_retry_warning_is_kept_for_the_screen_once() {
        use tracing_subscriber::layer::SubscriberExt;
        let sub = tracing_subscriber::registry().with(RetryNotices);
        tracing::subscriber::with_default(sub, || {
            tracing::warn!("another warning");
            tracing::warn!(
                target: crate::agent::RETRY_TARGET,
                "openai: HTTP 429 (slow down) from URL; retrying in {:.1} s (attempt {}/{})",
                15.0,
                2,
                4
            );
        });
        assert_eq!(
            take_retry_notice().as_deref(),
            Some("openai: HTTP 429 (slow down) from URL; retrying in 15.0 s (attempt 2/4)")
        );
        assert_eq!(take_retry_notice(), None);
    }

    // tracing-subscriber printed each failed write on stderr, over the screen (548,000
    // lines of it in an audit); the log now drops it and says so once.
    #[test]
    fn a_log_on_a_full_disk_drops_its_lines_and_says_so_once() {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut log = LogFile {
            file,
            named: "log x.log".into(),
            failed: false,
        };
        for _ in 0..3 {
            assert!(log.write_all(b"a line\n").is_ok());
        }
        let said = take_log_failure().expect("the failure is kept");
        assert!(
            said.starts_with("log x.log: cannot write the log (No space left on device"),
            "{said}"
        );
        assert_eq!(take_log_failure(), None, "said once");
        assert!(log.write_all(b"more\n").is_ok());
        assert_eq!(take_log_failure(), None, "and not again");
    }

    #[test]
    fn the_watchdog_waits_for_the_loop_then_exits_like_the_signal() {
        let s = Duration::from_secs;
        assert_eq!(watchdog_verdict(0, false, s(60)), None, "no signal");
        assert_eq!(watchdog_verdict(1, false, s(2)), None, "still in grace");
        assert_eq!(watchdog_verdict(1, false, s(3)), Some(129), "SIGHUP");
        assert_eq!(watchdog_verdict(15, false, s(4)), Some(143), "SIGTERM");
        assert_eq!(
            watchdog_verdict(1, true, s(4)),
            None,
            "the loop is on its way out"
        );
        assert_eq!(
            watchdog_verdict(1, true, s(10)),
            Some(129),
            "but not forever"
        );
    }
}
