//! Arborist: a terminal workbench for agent-guided pruning of large language models.
//!
//! Data flow: `model` (weights, decoder) → `data` (token windows) → `eval` (metrics).

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
