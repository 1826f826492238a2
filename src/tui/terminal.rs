//! The terminal: raw mode and the alternate screen, and the three ways back out of them:
//! a normal quit (the guard's drop), a panic (the hook), and SIGTERM/SIGHUP/SIGINT (a flag
//! the loop checks every tick). Logs go to a file, never to the screen.

use anyhow::{Context, Result};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{stdout, Stdout};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the screen is ours right now (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();

pub struct TerminalGuard {
    pub term: Term,
    signalled: Arc<AtomicBool>,
}

/// Take over the terminal. Install the panic hook and the signal flag first, so nothing
/// after this point can leave the terminal raw.
pub fn enter(mouse: bool) -> Result<TerminalGuard> {
    install_panic_hook();
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&signalled))
            .context("cannot install the signal handler")?;
    }
    enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    ACTIVE.store(true, Ordering::SeqCst);
    execute!(stdout(), EnterAlternateScreen)?;
    if mouse {
        execute!(stdout(), EnableMouseCapture)?;
    }
    let term = Terminal::new(CrosstermBackend::new(stdout()))?;
    Ok(TerminalGuard { term, signalled })
}

/// Leave raw mode and the alternate screen (idempotent; safe from the panic hook).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
        let _ = disable_raw_mode();
    }
}

impl TerminalGuard {
    /// A termination signal arrived.
    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
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

/// Send `tracing` output to a file: $ARBORIST_LOG, or arborist.log beside the session.
/// Returns the path, or None when no file could be opened (logging is then off).
pub fn init_logging(session: &Path) -> Option<PathBuf> {
    let path = match std::env::var_os("ARBORIST_LOG") {
        Some(p) => PathBuf::from(p),
        None => session
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("arborist.log"),
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBORIST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(path)
}
