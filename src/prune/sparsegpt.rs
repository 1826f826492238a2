//! SparseGPT (OBS weight update with a damped Hessian). Being written.
