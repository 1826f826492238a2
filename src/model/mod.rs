//! Models: configuration, files, weights, the instrumented decoder, masks and tokenizer.

mod attention;
mod attention_grad;
mod backward;
mod blob_reuse;
pub mod boundaries;
pub mod bundled;
pub mod config;
pub mod decoder;
pub mod device;
pub mod generate;
mod half_kernels;
mod hub_watch;
pub mod kernels;
pub mod kind;
pub mod linear;
pub mod loaded;
pub mod mask;
pub mod matmul;
mod norm;
pub mod phases;
pub mod random;
pub mod save;
pub mod shards;
pub mod source;
pub mod stats;
#[cfg(test)]
pub(crate) mod testing;
mod vexp;
pub mod weights;

pub use config::{Arch, ModelConfig};
pub use decoder::Decoder;
pub use kind::{LinearId, LinearKind};
pub use linear::Linear;
pub use loaded::LoadedModel;
pub use mask::Mask;
pub use source::ModelFiles;
pub use stats::{BlockStats, InputStats};
