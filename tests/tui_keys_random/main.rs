//! Random key sessions against the TUI's pure key → request step: from fixed seeds, a few
//! hundred sessions of random keys, clicks and pastes on random machine states (a proposal
//! waiting for review, an agent failure, a step running, a finished session, replay at a
//! random event) at random terminal sizes (1×1 up to 250×80, resized on the way), with a
//! frame drawn into ratatui's TestBackend after every input.
//!
//! Each session runs under `catch_unwind`; a failure (a panic in the app, or one of the
//! checks in `checks.rs`) is shrunk to a shorter input sequence that still fails and
//! reported with its seed, state, size and inputs.

#[allow(dead_code, unused_imports)]
#[path = "../tui_render/common.rs"]
mod common;

mod checks;
mod gen;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::SeedableRng;

use arborist::tui::replay::Timeline;
use gen::{Kind, Session};

/// Seeds of the sessions: fixed, so a failure reproduces; each seed is one session.
const SESSIONS: u64 = 500;
const FIRST_SEED: u64 = 0x5eed_0000;

thread_local! {
    /// The last panic's message and location, recorded by the hook while sessions run.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Totals over all the sessions run (the shrinking reruns not counted).
#[derive(Default, Debug)]
pub struct Counts {
    pub inputs: usize,
    pub keys: usize,
    pub frames: usize,
    pub feeds: usize,
    pub seeks: usize,
    /// Worker and agent reports fed by the harness (`Input::Work`).
    pub work: usize,
    /// Frames drawn in each mode: normal, edit, text, dialog; and too small to draw.
    pub modes: [usize; 4],
    pub too_small: usize,
}

/// Runs `s`, returning the panic (message and location) if one happened.
fn run_caught(s: &Session, replay: &mut Option<Timeline>, counts: &mut Counts) -> Option<String> {
    PANIC.with(|p| p.borrow_mut().take());
    let r = panic::catch_unwind(AssertUnwindSafe(|| checks::run(s, replay, counts)));
    match r {
        Ok(()) => None,
        Err(payload) => {
            // The timeline may be half-way through a seek: build it again.
            *replay = None;
            let recorded = PANIC.with(|p| p.borrow_mut().take());
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(a panic without a message)".into());
            Some(recorded.unwrap_or(msg))
        }
    }
}

/// The shortest input sequence found (removing chunks, then single inputs) that still
/// fails; its panic.
fn shrink(s: &Session, replay: &mut Option<Timeline>) -> (Session, String) {
    let mut scratch = Counts::default();
    let mut best = s.clone();
    let mut why = run_caught(&best, replay, &mut scratch).unwrap_or_default();
    // Only inputs up to the failing one matter.
    let mut chunk = best.inputs.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.inputs.len() {
            let mut cand = best.clone();
            let end = (i + chunk).min(cand.inputs.len());
            cand.inputs.drain(i..end);
            match run_caught(&cand, replay, &mut scratch) {
                Some(w) => (best, why) = (cand, w),
                None => i += chunk,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    (best, why)
}

#[test]
fn random_keys_never_break_the_tui() {
    let started = std::time::Instant::now();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
    let mut counts = Counts::default();
    let mut replay: Option<Timeline> = None;
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for seed in FIRST_SEED..FIRST_SEED + SESSIONS {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = gen::session(&mut rng);
        *kinds.entry(s.kind.name()).or_default() += 1;
        if let Some(why) = run_caught(&s, &mut replay, &mut counts) {
            let (small, small_why) = shrink(&s, &mut replay);
            failures.push(format!(
                "seed {seed:#x}: state {:?}, size {}x{}, {} inputs\n  panic: {why}\n  \
                 shrunk to {} inputs (size {}x{}): {}\n  its panic: {small_why}\n  \
                 the whole sequence: {}",
                s.kind,
                s.size.0,
                s.size.1,
                s.inputs.len(),
                small.inputs.len(),
                small.size.0,
                small.size.1,
                gen::describe(&small.inputs),
                gen::describe(&s.inputs),
            ));
        }
    }
    panic::set_hook(previous);
    eprintln!(
        "{SESSIONS} sessions ({kinds:?}): {counts:?}, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {SESSIONS} sessions failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The sessions reached what they are meant to reach.
    assert!(counts.frames > 10_000, "{counts:?}");
    assert!(
        counts.feeds > 50 && counts.seeks > 50 && counts.work > 50,
        "{counts:?}"
    );
    assert!(counts.modes.iter().all(|&n| n > 200), "{counts:?}");
    assert!(counts.too_small > 500, "{counts:?}");
    for k in Kind::NAMES {
        assert!(kinds.get(k).copied().unwrap_or(0) >= 10, "{k}: {kinds:?}");
    }
}
