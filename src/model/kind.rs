//! Which linear layer of a block: its kind and position, and the names Hugging Face gives
//! them. Free of candle, so the session and agent can name layers without the model.

use super::config::ModelConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearKind {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// The kinds' short names in the order a block computes them (the order of `ALL`).
pub const SHORT_NAMES: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

impl LinearKind {
    pub const ALL: [LinearKind; 7] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Gate,
        LinearKind::Up,
        LinearKind::Down,
    ];

    /// Module path inside a block, as Hugging Face names it.
    pub fn path(self) -> &'static str {
        match self {
            LinearKind::Q => "self_attn.q_proj",
            LinearKind::K => "self_attn.k_proj",
            LinearKind::V => "self_attn.v_proj",
            LinearKind::O => "self_attn.o_proj",
            LinearKind::Gate => "mlp.gate_proj",
            LinearKind::Up => "mlp.up_proj",
            LinearKind::Down => "mlp.down_proj",
        }
    }

    /// The kind's short name (`q`, `gate`), as the profile table and the agent use it.
    pub fn short(self) -> &'static str {
        SHORT_NAMES[self as usize]
    }

    /// [out, in] of the weight, as the config implies.
    pub fn shape(self, cfg: &ModelConfig) -> [usize; 2] {
        let h = cfg.hidden_size;
        let (q, kv) = (
            cfg.num_heads * cfg.head_dim,
            cfg.num_kv_heads * cfg.head_dim,
        );
        match self {
            LinearKind::Q => [q, h],
            LinearKind::K | LinearKind::V => [kv, h],
            LinearKind::O => [h, q],
            LinearKind::Gate | LinearKind::Up => [cfg.intermediate_size, h],
            LinearKind::Down => [h, cfg.intermediate_size],
        }
    }

    pub fn has_bias(self, cfg: &ModelConfig) -> bool {
        match self {
            LinearKind::Q | LinearKind::K | LinearKind::V => cfg.qkv_bias,
            LinearKind::O => cfg.o_bias,
            _ => cfg.mlp_bias,
        }
    }
}

/// Position of a linear layer: block index and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearId {
    pub block: usize,
    pub kind: LinearKind,
}

impl LinearId {
    pub fn name(self) -> String {
        format!("model.layers.{}.{}", self.block, self.kind.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `short` indexes SHORT_NAMES by discriminant: both must follow `ALL`'s order.
    #[test]
    fn short_names_follow_the_kinds_order() {
        for (i, k) in LinearKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
            assert!(k.path().ends_with(&format!(".{}_proj", k.short())), "{k:?}");
        }
    }
}
