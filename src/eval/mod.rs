//! Evaluations; every result carries its protocol.

pub mod freebaseqa;
pub mod incremental;
pub mod mmlu;
pub mod ppl;
pub use ppl::{perplexity, Perplexity};
