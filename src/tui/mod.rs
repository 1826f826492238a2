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
pub mod textfield;
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

/// Startup warnings (keymap, themes): all go to the log; the screen shows the first, and
/// how many more the log holds.
pub(crate) fn startup_notice(warnings: &[String]) -> Option<String> {
    for w in warnings {
        tracing::warn!("{w}");
    }
    let first = warnings.first()?;
    Some(match warnings.len() - 1 {
        0 => first.clone(),
        n => format!("{first} (and {n} more in the log)"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn startup_notice_counts_the_warnings_it_does_not_show() {
        assert_eq!(super::startup_notice(&[]), None);
        let one = vec!["theme a.yaml: bad colour".to_string()];
        assert_eq!(super::startup_notice(&one).unwrap(), one[0]);
        let three = vec![
            one[0].clone(),
            "b".into(),
            "ARBORIST_THEME=nope: no such theme".into(),
        ];
        assert_eq!(
            super::startup_notice(&three).unwrap(),
            "theme a.yaml: bad colour (and 2 more in the log)"
        );
    }
}
