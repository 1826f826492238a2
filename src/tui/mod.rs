//! The terminal workbench: a ratatui front end for live sessions and replay.
//!
//! It drives the session machine through the worker `Driver` (live) or a session file
//! (replay) and draws every frame from the machine state. It never touches candle: compute
//! runs on the workers. Besides the driver and the session types it uses the worker's
//! setup (opening a session, its startup notes) and the model source's download progress,
//! both free of candle types.

mod actions;
pub mod app;
pub mod colormap;
pub mod editor;
pub mod fixtures;
pub mod grid;
mod hints;
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
mod verify_child;
pub mod view;
pub mod wrap;

pub use live::run_live;
pub use replay::run_replay;

/// Whether stdin and stdout are a terminal the TUI can take over.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Startup warnings (the log, keymap, themes): all go to the log when there is one; the
/// screen shows how many there are before the first, so a long first one cut at the edge
/// keeps the count (it was put after it and cut off).
pub(crate) fn startup_notice(warnings: &[String], logged: bool) -> Option<String> {
    for w in warnings {
        tracing::warn!("{w}");
    }
    let first = warnings.first()?;
    let whereabouts = if logged {
        "all in the log"
    } else {
        "not logged"
    };
    Some(match warnings.len() {
        1 => first.clone(),
        n => format!("{n} warnings ({whereabouts}), the first: {first}"),
    })
}

/// A screen's startup warnings: the log's own failure leads (the others go to that log),
/// then the rest.
pub(crate) fn startup_warnings(
    log: &Result<Option<std::path::PathBuf>, String>,
    rest: impl IntoIterator<Item = String>,
) -> Vec<String> {
    log.as_ref()
        .err()
        .cloned()
        .into_iter()
        .chain(rest)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn startup_notice_counts_the_warnings_it_does_not_show() {
        assert_eq!(super::startup_notice(&[], true), None);
        let one = vec!["theme a.yaml: bad colour".to_string()];
        assert_eq!(super::startup_notice(&one, true).unwrap(), one[0]);
        let three = vec![
            one[0].clone(),
            "b".into(),
            "ARBORIST_THEME=nope: no such theme".into(),
        ];
        assert_eq!(
            super::startup_notice(&three, true).unwrap(),
            "3 warnings (all in the log), the first: theme a.yaml: bad colour"
        );
        assert_eq!(
            super::startup_notice(&three, false).unwrap(),
            "3 warnings (not logged), the first: theme a.yaml: bad colour"
        );
    }
}
