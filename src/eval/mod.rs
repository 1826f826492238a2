//! Evaluations; every result carries its protocol.

pub mod ppl;
pub use ppl::{perplexity, Perplexity};
