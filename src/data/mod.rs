//! Text corpora and token windows.

pub mod documents;
pub mod freebaseqa;
pub mod mmlu;
pub mod parquet_text;
pub mod text;
pub use documents::{read_documents, CalibSample};
pub use parquet_text::read_ppl_text;
pub use text::{default_seqlen, ids_tensor, read_text, Windows};
