//! The agent-guided session: the pure loop (`machine`), its events, the session file,
//! the headless runner and replay.

pub mod consistency;
mod culprit;
pub mod events;
pub mod machine;

pub use events::{Decision, Evaluation, Event, LayerInfo, ProbeScore, StopReason};
pub use machine::{Checkpoint, Effect, LoopOptions, Machine, MaskStep, Phase};
pub mod file;
pub mod options;
pub mod reach;
pub mod reserve;
pub mod review;

pub use options::{AgentSpec, ProbeSpec, RunOptions};
