//! The terminal workbench: a ratatui front end for live sessions and replay.
//!
//! It drives the session machine through the worker `Driver` (live) or a session file
//! (replay) and draws every frame from the machine state. It never touches candle: compute
//! runs on the workers, and this module knows only the driver and the session types.

mod actions;
pub mod app;
pub mod colormap;
pub mod editor;
pub mod fixtures;
pub mod grid;
pub mod input;
pub mod key;
pub mod keymap;
mod live;
mod mouse;
pub mod replay;
mod runloop;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod view;

pub use live::run_live;
pub use replay::run_replay;

/// Whether stdin and stdout are a terminal the TUI can take over.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}
