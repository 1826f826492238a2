//! Pruning: scores, masks within a layer, allocations across layers, one-shot methods.

pub mod sparsegpt;
