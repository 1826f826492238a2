//! Pruning: scores, masks within a layer, allocations across layers, one-shot methods.

pub mod alloc;
pub mod export;
pub mod metadata;
pub mod oneshot;
pub mod scores;
pub mod select;
pub mod sparsegpt;
pub mod structured;
