//! Evaluations; every result carries its protocol.

pub mod freebaseqa;
pub mod incremental;
pub mod mmlu;
pub mod mmlu_prompt;
pub mod ppl;
pub use ppl::{perplexity, Perplexity};
