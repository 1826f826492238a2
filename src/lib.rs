//! Arborist: a terminal workbench for agent-guided pruning of large language models.
//!
//! Data flow: `model` (weights, decoder) → `profile` (sensitivity per layer) → `agent`
//! (proposals, reflections) → `session` (the pure loop and its file) → `worker` (compute and
//! agent threads) → `tui`. `data` and `eval` give the windows and metrics, `prune` the
//! one-shot methods and export, `cli` the commands, `bench` the benchmarks.

pub mod agent;
pub mod bench;
pub mod cli;
pub mod data;
pub mod eval;
pub mod model;
pub mod profile;
pub mod prune;
pub mod runtime;
pub mod session;
pub mod train;
pub mod tui;
pub mod worker;
pub mod world;
