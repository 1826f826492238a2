//! Text corpora and token windows.

pub mod text;
pub use text::{default_seqlen, ids_tensor, read_text, Windows};
