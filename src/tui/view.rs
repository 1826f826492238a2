//! What one frame is drawn from: references into the machine state and the event log,
//! whether the session is live or replayed. Nothing here computes.

use crate::agent::Proposal;
use crate::session::{Event, Machine, Phase};

/// The proposal waiting for review: only while the machine reviews one. A session stopped
/// during review keeps its last proposal, but nobody is asked about it any more.
pub fn pending(m: &Machine) -> Option<&Proposal> {
    m.proposal.as_ref().filter(|_| m.phase == Phase::Reviewing)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPos {
    /// Events applied so far (0 = before the first).
    pub index: usize,
    pub total: usize,
    /// The file has no finish: the run stopped (or is still writing it).
    pub unfinished: bool,
}

pub struct View<'a> {
    pub machine: &'a Machine,
    /// Events up to now (live) or up to the replay position.
    pub events: &'a [Event],
    /// A proposal waiting for the reviewer.
    pub pending: Option<&'a Proposal>,
    /// The compute thread's latest report: label, done, total.
    pub progress: Option<&'a (String, usize, usize)>,
    pub replay: Option<ReplayPos>,
    /// Session file path, for titles.
    pub session: &'a str,
    /// The session's options (the file's header, in replay) as YAML, for the details.
    pub options: &'a str,
    /// Set while the model loads; the loading screen shows it.
    pub loading: Option<&'a str>,
    /// How long the worker's current job (or its current stage) has run, live: profiles
    /// and mask rebuilds report no counts, so the time is what shows that they move.
    pub busy_for: Option<std::time::Duration>,
}

impl View<'_> {
    pub fn live(&self) -> bool {
        self.replay.is_none()
    }

    /// A job runs on a worker (compute or agent): quitting now abandons it.
    pub fn busy(&self) -> bool {
        self.live()
            && self.loading.is_none()
            && matches!(
                self.machine.phase,
                Phase::Baseline
                    | Phase::Profiling
                    | Phase::Proposing
                    | Phase::Applying
                    | Phase::Reflecting
            )
    }

    pub fn can_review(&self) -> bool {
        self.live() && self.pending.is_some() && self.machine.phase == Phase::Reviewing
    }

    /// The proposal waiting is the empty one an agent failure leaves: there is nothing to
    /// approve or edit, only to override, ask again or skip.
    pub fn agent_failed_review(&self) -> bool {
        self.can_review() && self.pending.is_some_and(|p| p.layers.is_empty())
    }

    /// Rolling back while the agent is still working would race its late reply, so only
    /// while a proposal waits for review (the agent is idle then).
    pub fn can_rollback(&self) -> bool {
        self.live()
            && self.pending.is_some()
            && self.machine.phase == Phase::Reviewing
            && self.machine.checkpoints.len() >= 2
    }

    /// A stop, auto-approve or pause would change something: once a stop is asked for, the
    /// session ends at the next safe point whatever they say.
    pub fn can_stop(&self) -> bool {
        self.live()
            && self.loading.is_none()
            && !self.machine.is_done()
            && !self.machine.stop_requested
    }

    /// The worker's state in a few words, with progress when there is some.
    pub fn worker_state(&self) -> String {
        if let Some(msg) = self.loading {
            return msg.to_string();
        }
        if let Some(r) = self.replay {
            // An unfinished file's last event is not the session's end (its status bar
            // read like a whole session's).
            let of = if r.unfinished { ", unfinished" } else { "" };
            return format!("replay: event {}/{} (read-only{of})", r.index, r.total);
        }
        let progress = self.progress.map(|(label, done, total)| {
            if *total > 1 {
                let unit = match label == crate::worker::REBUILDING {
                    true => "steps",
                    false => "windows",
                };
                format!("{label} {done}/{total} {unit}")
            } else {
                label.clone()
            }
        });
        let m = self.machine;
        let state: String = match &m.phase {
            Phase::Idle => "starting".into(),
            Phase::Baseline => progress.unwrap_or_else(|| "evaluating the dense model".into()),
            Phase::Profiling => progress.unwrap_or_else(|| "profiling".into()),
            Phase::Proposing => "agent is proposing".into(),
            Phase::Reviewing => "waiting for your review".into(),
            Phase::Applying => progress.unwrap_or_else(|| "applying masks".into()),
            Phase::Reflecting => "agent is reflecting".into(),
            Phase::Done(r) => format!("finished: {}", r.words()),
        };
        match self.busy_for.filter(|d| d.as_secs() >= 1 && self.busy()) {
            Some(d) => format!("{state} · {}", elapsed(d)),
            None => state,
        }
    }
}

/// "9 s", "2 min 05 s", "1 h 02 min".
fn elapsed(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}
