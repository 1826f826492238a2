//! The TUI drawn into ratatui's TestBackend from synthetic machine states, and driven by
//! real key events through the app's pure key → request step.

mod common;
mod controls;
mod layout;
mod replay;
mod review;
