//! Text corpora and token windows.

pub mod text;
pub use text::{read_text, Windows};
