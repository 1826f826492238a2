//! The loop's state machine driven at random, from fixed seeds: no model, no IO (but for
//! the sessions written to a file and read back).
//!
//! Each session draws its loop options, its synthetic layers and the habits of every party
//! the real runners play (the agent, the reviewer, the compute worker, a process that dies
//! and is resumed), then answers what the machine's effects ask for, in their order,
//! choosing among what the runners could send in that phase: valid proposals (random, or
//! the built-in agent's), agent failures, approvals, edits, overrides, rejections with
//! feedback, skips, rollbacks to a random checkpoint, stops, evaluations around the
//! checkpoint's perplexity (past the guard too, and the NaN or infinity a half dtype can
//! give), profiles and reflections (failed ones too). Between them it feeds events no
//! runner sends in that state (a hand-edited file could), which must be refused without a
//! trace. After every event it checks what the machine asked for and what it holds against
//! what the driver saw (kept apart from the machine), and at the end replays the session.
//!
//! Wanda is simulated by its rounding: a layer of `cols` inputs at target t prunes
//! floor(t * cols) of each row's weights, never fewer than it had, so every checkpoint's
//! masks can be rebuilt from its recorded steps.

mod checks;
mod ending;
mod refusals;
mod sim;
mod world;

use arborist::agent::{
    builtin::BuiltinAgent, AgentContext, AgentReply, Bounds, LayerRow, LayerTarget, Proposal,
    Usage, NO_REFLECTION,
};
use arborist::model::LinearKind;
use arborist::session::file::{self, Header, SessionLog, SessionWriter};
use arborist::session::{
    consistency, reach, Decision, Effect, Evaluation, Event, LayerInfo, LoopOptions, Machine,
    Phase, ProbeScore, RunOptions, StopReason,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt::Debug;

const MODEL: &str = "synthetic";
/// Sessions of the two main tests (half each); every `FILE_EVERY`-th is also written to a
/// file and read back.
const SESSIONS: u64 = 400;
const FILE_EVERY: u64 = 20;
/// What the driver allows itself, so that a session that does not end is the machine's
/// doing: rejections per iteration, reviewer rollbacks and resumes after agent failures
/// per session.
const MAX_REJECTS: usize = 3;
const MAX_REVIEWER_ROLLBACKS: usize = 3;
const MAX_CONTINUES: usize = 2;
/// Inputs one iteration can take under those limits: a profile, a proposal (or failure)
/// and its decision for the first ask and each re-ask, an evaluation and a reflection.
const INPUTS_PER_ROUND: usize = 1 + 2 * (MAX_REJECTS + 1) + 2;
/// Float room the machine allows a sparsity (a count of weights over the layer's size).
const ROOM: f64 = 1e-9;

fn dbg<T: Debug + ?Sized>(x: &T) -> String {
    format!("{x:?}")
}

/// Equal, a NaN perplexity equal to itself (a rolled-back step's can be one).
fn same<T: PartialEq + Debug + ?Sized>(a: &T, b: &T) -> bool {
    a == b || dbg(a) == dbg(b)
}

/// Events as the session file writes them (NaN equal to itself, every bit of a number).
fn yaml(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_yaml::to_string(e).unwrap())
        .collect()
}

fn floor4(x: f64) -> f64 {
    (x * 1e4).floor() / 1e4
}

/// The sparsity Wanda leaves a layer of `cols` inputs at `before` grown toward `target`.
fn wanda(before: f64, target: f64, cols: u64) -> f64 {
    ((target * cols as f64).floor() / cols as f64).max(before)
}

fn reply<T>(value: T, usage: Usage) -> AgentReply<T> {
    AgentReply {
        value,
        prompt: None,
        raw: None,
        usage,
    }
}

/// The most the bounds allow: `max_step` more (up to `max_layer_sparsity`) on the
/// `max_layers` largest layers that have room.
fn greedy_targets(ctx: &AgentContext) -> Vec<LayerTarget> {
    let b = &ctx.bounds;
    let mut rows: Vec<&LayerRow> = (ctx.layers.iter())
        .filter(|r| b.max_layer_sparsity - r.sparsity >= 0.002)
        .collect();
    rows.sort_by(|x, y| y.params.cmp(&x.params).then(x.name.cmp(&y.name)));
    (rows.iter().take(b.max_layers))
        .map(|r| LayerTarget {
            name: r.name.clone(),
            sparsity: (r.sparsity + b.max_step).min(b.max_layer_sparsity),
        })
        .collect()
}
use sim::Sim;
use world::World;

/// Runs the sessions of `seeds`; says which ways of ending they reached and how much they
/// did, so that a driver that stopped exercising the machine fails too.
fn sessions(seeds: std::ops::Range<u64>) {
    let n = (seeds.end - seeds.start) as usize;
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let (mut inputs, mut refused, mut resumes, mut guards) = (0, 0, 0, 0);
    for seed in seeds {
        let s = Sim::run(seed);
        let Phase::Done(r) = &s.m.phase else {
            unreachable!()
        };
        *ends.entry(format!("{r:?}")).or_default() += 1;
        inputs += s.inputs;
        refused += s.refused;
        resumes += s.resumes;
        guards += s.guards.len();
    }
    // Every way of ending is reached, and the sessions do enough to mean something.
    for r in ["TargetReached", "MaxIterations", "UserStop", "AgentFailed"] {
        assert!(ends.get(r).is_some_and(|&k| k * 20 >= n), "{ends:?}");
    }
    assert!(
        inputs > 20 * n && refused > 5 * n && resumes > n / 2 && guards > 4 * n,
        "{inputs} inputs, {refused} refused, {resumes} resumes, {guards} guards"
    );
}

#[test]
fn random_sessions_keep_the_loops_invariants() {
    sessions(0..SESSIONS / 2);
}

// The other half, on another test thread.
#[test]
fn more_random_sessions_keep_them_too() {
    sessions(SESSIONS / 2..SESSIONS);
}

#[test]
fn random_sessions_read_back_from_their_files_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for seed in (0..SESSIONS).step_by(FILE_EVERY as usize) {
        Sim::run(seed).check_file(dir.path());
    }
}
