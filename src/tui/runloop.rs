//! The one UI loop, shared by live sessions and replay: drain background work, draw when
//! something changed, wait at most one tick for input. Nothing in here blocks on compute.
//! Input is awaited with our own poll(2) first (see `input`), so a hung-up terminal ends
//! the loop like SIGHUP instead of trapping it inside crossterm.

use anyhow::Result;
use crossterm::event::{self, Event as TermEvent};
use std::time::{Duration, Instant};

use super::app::{App, Request};
use super::input::{self, Wait};
use super::terminal::TerminalGuard;
use super::ui;
use super::view::View;

/// How long one wait for input may take; also the worst key-to-frame latency.
const TICK: Duration = Duration::from_millis(50);
/// Redraw this often even when idle (the elapsed time of the running job).
const IDLE_REDRAW: Duration = Duration::from_millis(500);

/// How long crossterm may look for input our own poll says is there (or for a resize).
const CROSSTERM_LOOK: Duration = Duration::from_millis(1);

/// What the loop drives: a live driver or a replay timeline.
pub trait Source {
    fn view(&self) -> View<'_>;
    /// Take in background results without blocking; true when the screen should change.
    fn tick(&mut self, app: &mut App) -> Result<bool>;
    /// Carry out a request from the app (feed an event, seek, verify).
    fn apply(&mut self, req: Request, app: &mut App) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    /// The terminating signal (a hang-up of the terminal is SIGHUP's).
    Signal(i32),
}

/// After the screen is restored and the last line said: says so, and ends the process as
/// signal `sig` would (130, 143, 129 in a shell), as a headless run does; it was exit 1.
pub fn end_by_signal(sig: i32) -> ! {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: stopped by a signal");
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    std::process::exit(128 + sig);
}

/// Wait up to `timeout` for input: Ready when crossterm has events to read now. Without a
/// terminal fd to watch, crossterm waits.
fn wait_input(fd: Option<std::os::fd::RawFd>, timeout: Duration) -> Result<Wait> {
    let crossterm_wait = match fd {
        Some(fd) if input::wait(fd, timeout) == Wait::HangUp => return Ok(Wait::HangUp),
        // Ready, or the tick is over: crossterm may hold a resize or queued keys. Its
        // poll(2) source reads nothing at a zero timeout, hence one millisecond.
        Some(_) => CROSSTERM_LOOK,
        None => timeout,
    };
    Ok(if event::poll(crossterm_wait)? {
        Wait::Ready
    } else {
        Wait::Timeout
    })
}

pub fn run<S: Source>(guard: &mut TerminalGuard, app: &mut App, src: &mut S) -> Result<Exit> {
    let fd = input::terminal_fd();
    let mut dirty = true;
    let mut drawn = Instant::now();
    loop {
        if guard.signalled() {
            return Ok(Exit::Signal(guard.signal()));
        }
        dirty |= src.tick(app)?;
        if let Some(w) = super::terminal::take_log_failure() {
            app.say(crate::tui::app::Level::Warn, w);
            dirty = true;
        }
        if let Some(w) = super::terminal::take_retry_notice() {
            let phase = src.view().machine.phase.clone();
            app.say_while(phase, crate::tui::app::Level::Warn, w);
            dirty = true;
        }
        if dirty || drawn.elapsed() >= IDLE_REDRAW {
            let mut areas = None;
            guard.term.draw(|f| {
                let v = src.view();
                app.follow(&v);
                areas = Some(ui::draw(f, app, &v));
            })?;
            app.areas = areas.unwrap_or_default();
            drawn = Instant::now();
            dirty = false;
        }
        match wait_input(fd, TICK)? {
            Wait::HangUp => {
                tracing::warn!("the terminal hung up");
                return Ok(Exit::Signal(libc::SIGHUP));
            }
            Wait::Timeout => continue,
            Wait::Ready => {}
        }
        // Take every queued input before the next frame, so held keys never lag.
        loop {
            let ev = event::read()?;
            dirty |= changes_the_screen(&ev, app.mouse);
            let requests = if is_suspend(&ev) {
                guard.suspend(app.mouse)?;
                vec![]
            } else {
                let v = src.view();
                match ev {
                    TermEvent::Key(k) => app.on_key(k, &v),
                    TermEvent::Mouse(m) if app.mouse => app.on_mouse(m),
                    TermEvent::Paste(text) => {
                        app.on_paste(&text, &v);
                        vec![]
                    }
                    _ => vec![],
                }
            };
            for r in requests {
                dirty = true;
                match r {
                    Request::Quit => return Ok(Exit::Quit),
                    Request::SetMouse(on) => guard.set_mouse(on)?,
                    other => src.apply(other, app)?,
                }
            }
            if guard.signalled() {
                return Ok(Exit::Signal(guard.signal()));
            }
            match wait_input(fd, Duration::ZERO)? {
                Wait::HangUp => return Ok(Exit::Signal(libc::SIGHUP)),
                Wait::Timeout => break,
                Wait::Ready => {}
            }
        }
    }
}

/// ctrl-z, pressed: the terminal's suspend key, which raw mode turns into a key event.
fn is_suspend(ev: &TermEvent) -> bool {
    use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
    matches!(ev, TermEvent::Key(k) if k.code == KeyCode::Char('z')
        && k.modifiers.contains(KeyModifiers::CONTROL)
        && k.kind != KeyEventKind::Release)
}

/// Whether an input event can change what is drawn. Mouse capture reports every move
/// (`?1003h`), and a frame per move kept a core busy while the mouse swept the screen;
/// moves change nothing.
fn changes_the_screen(ev: &TermEvent, mouse: bool) -> bool {
    use crossterm::event::MouseEventKind;
    match ev {
        TermEvent::Mouse(m) => mouse && m.kind != MouseEventKind::Moved,
        _ => true,
    }
}

#[cfg(test)]
mod input_tests {
    use super::*;
    use crossterm::event::{
        KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
    };

    fn mouse(kind: MouseEventKind) -> TermEvent {
        TermEvent::Mouse(MouseEvent {
            kind,
            column: 3,
            row: 4,
            modifiers: KeyModifiers::NONE,
        })
    }

    #[test]
    fn mouse_moves_do_not_redraw_and_clicks_do() {
        assert!(!changes_the_screen(&mouse(MouseEventKind::Moved), true));
        assert!(changes_the_screen(
            &mouse(MouseEventKind::Down(MouseButton::Left)),
            true
        ));
        assert!(changes_the_screen(&mouse(MouseEventKind::ScrollDown), true));
        assert!(!changes_the_screen(
            &mouse(MouseEventKind::ScrollDown),
            false
        ));
        assert!(changes_the_screen(&TermEvent::Resize(80, 24), true));
        let key = TermEvent::Key(KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE));
        assert!(changes_the_screen(&key, true));
    }

    #[test]
    fn ctrl_z_is_the_suspend_key() {
        let ctrl_z = KeyEvent::new(KeyCode::Char('z'), KeyModifiers::CONTROL);
        assert!(is_suspend(&TermEvent::Key(ctrl_z)));
        let z = KeyEvent::new(KeyCode::Char('z'), KeyModifiers::NONE);
        assert!(!is_suspend(&TermEvent::Key(z)));
        let mut released = ctrl_z;
        released.kind = KeyEventKind::Release;
        assert!(!is_suspend(&TermEvent::Key(released)));
    }
}
