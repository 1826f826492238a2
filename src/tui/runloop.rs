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
/// Redraw this often even when idle (spinners, elapsed times).
const IDLE_REDRAW: Duration = Duration::from_millis(500);

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
    Signal,
}

/// Wait up to `timeout` for input; true when crossterm may be asked for events now.
/// Err(()) when the terminal hung up. Without a terminal fd to watch, crossterm waits.
fn wait_input(fd: Option<std::os::fd::RawFd>, timeout: Duration) -> Result<Result<bool, ()>> {
    let Some(fd) = fd else {
        return Ok(Ok(event::poll(timeout)?));
    };
    match input::wait(fd, timeout) {
        Wait::HangUp => Ok(Err(())),
        // Ready, or the tick is over: crossterm may hold a resize or queued keys.
        Wait::Ready | Wait::Timeout => Ok(Ok(event::poll(Duration::ZERO)?)),
    }
}

pub fn run<S: Source>(guard: &mut TerminalGuard, app: &mut App, src: &mut S) -> Result<Exit> {
    let fd = input::terminal_fd();
    let mut dirty = true;
    let mut drawn = Instant::now();
    loop {
        if guard.signalled() {
            return Ok(Exit::Signal);
        }
        dirty |= src.tick(app)?;
        if dirty || drawn.elapsed() >= IDLE_REDRAW {
            let mut areas = None;
            guard.term.draw(|f| {
                let v = src.view();
                areas = Some(ui::draw(f, app, &v));
            })?;
            app.areas = areas.unwrap_or_default();
            drawn = Instant::now();
            dirty = false;
        }
        match wait_input(fd, TICK)? {
            Err(()) => {
                tracing::warn!("the terminal hung up");
                return Ok(Exit::Signal);
            }
            Ok(false) => continue,
            Ok(true) => {}
        }
        // Take every queued input before the next frame, so held keys never lag.
        loop {
            let requests = {
                let v = src.view();
                match event::read()? {
                    TermEvent::Key(k) => app.on_key(k, &v),
                    TermEvent::Mouse(m) if app.mouse => app.on_mouse(m),
                    _ => vec![],
                }
            };
            for r in requests {
                match r {
                    Request::Quit => return Ok(Exit::Quit),
                    Request::SetMouse(on) => guard.set_mouse(on)?,
                    other => src.apply(other, app)?,
                }
            }
            dirty = true;
            if guard.signalled() {
                return Ok(Exit::Signal);
            }
            match wait_input(fd, Duration::ZERO)? {
                Err(()) => return Ok(Exit::Signal),
                Ok(false) => break,
                Ok(true) => {}
            }
        }
    }
}
