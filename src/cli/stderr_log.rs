//! Warnings of the library (agent retries, fallbacks, a torn session tail) on stderr for the
//! commands without a terminal interface, which logs to a file instead.

use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `warning: MESSAGE`, one line per event, like the tool's own warnings.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        ev: &Event<'_>,
    ) -> fmt::Result {
        let level = match *ev.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => "note",
        };
        write!(w, "{level}: ")?;
        ctx.field_format().format_fields(w.by_ref(), ev)?;
        writeln!(w)
    }
}

/// Warnings and errors on stderr; `ARBORIST_LOG_LEVEL` (an env-filter) shows more.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBORIST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        // A failed write to stderr (a full disk) is dropped: its report would go to stderr
        // (set before `event_format`, which keeps it).
        .log_internal_errors(false)
        .event_format(Plain)
        .try_init();
}
