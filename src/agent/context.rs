//! What an agent sees each iteration and what it answers with. Plain data: the session
//! state machine builds these, the prompts render them, the session file records them.

use serde::{Deserialize, Serialize};

/// One linear layer of the sensitivity profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// Hugging Face module path, e.g. `model.layers.3.mlp.down_proj`.
    pub name: String,
    pub block: usize,
    /// q, k, v, o, gate, up or down.
    pub kind: String,
    pub s: f64,
    pub g: f64,
    pub z_s: f64,
    pub z_g: f64,
    pub sparsity: f64,
    pub params: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    pub name: String,
    pub from: f64,
    pub to: f64,
}

/// What happened to one applied proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub iteration: usize,
    pub changes: Vec<LayerChange>,
    pub ppl_before: f64,
    pub ppl_after: f64,
    pub accepted: bool,
    pub global_sparsity_after: f64,
    /// e.g. "rolled back: +7.1% > 5.0%".
    pub note: String,
    /// The human reviewer edited or overrode the agent's proposal before it was applied
    /// (from the `decided` event, never inferred from the numbers: Wanda rounds each row
    /// down, so what is applied differs slightly from any target).
    #[serde(default)]
    pub edited: bool,
    /// The knowledge probe's accuracy at the checkpoint and after the step (none when the
    /// session runs no probe).
    #[serde(default)]
    pub probe_before: Option<f64>,
    #[serde(default)]
    pub probe_after: Option<f64>,
    /// An accepted step a reviewer's later rollback undid: the iteration of the checkpoint
    /// restored (the baseline's is 0).
    #[serde(default)]
    pub undone_to: Option<usize>,
}

impl StepOutcome {
    /// The step's relative perplexity change, ppl_after / ppl_before - 1 (NaN without a
    /// positive perplexity before).
    pub fn delta(&self) -> f64 {
        relative_change(self.ppl_after, self.ppl_before)
    }
}

/// after / before - 1, NaN without a positive `before`.
pub fn relative_change(after: f64, before: f64) -> f64 {
    if before > 0.0 {
        after / before - 1.0
    } else {
        f64::NAN
    }
}

/// The knowledge probe, when the session runs one: its accuracy for the dense model and at
/// the current checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    /// `freebaseqa` or `mmlu`.
    pub kind: String,
    pub items: usize,
    pub dense: f64,
    pub now: f64,
}

/// Limits on one step; proposals outside them are rejected, not clamped, so the agent
/// learns the rule from the repair message instead of having its answer silently changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bounds {
    /// Largest sparsity increase of one layer in one step.
    pub max_step: f64,
    /// Most layers changed in one step.
    pub max_layers: usize,
    /// Highest sparsity any layer may reach.
    pub max_layer_sparsity: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_step: 0.10,
            max_layers: 8,
            max_layer_sparsity: 0.9,
        }
    }
}

/// Feedback the human reviewer gave when rejecting a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewerFeedback {
    pub iteration: usize,
    pub feedback: String,
    /// The proposal it was given on.
    pub rejected: Proposal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentContext {
    pub model: String,
    pub iteration: usize,
    pub target: f64,
    pub global_sparsity: f64,
    /// Relative perplexity increase per step that triggers a rollback (0.05 = 5%).
    pub threshold: f64,
    pub dense_ppl: f64,
    pub current_ppl: f64,
    pub layers: Vec<LayerRow>,
    pub history: Vec<StepOutcome>,
    pub reflections: Vec<String>,
    /// The iteration each of `reflections` is about.
    #[serde(default)]
    pub reflection_steps: Vec<usize>,
    /// Human feedback from a rejected proposal.
    pub feedback: Option<String>,
    /// The proposal `feedback` rejected.
    #[serde(default)]
    pub rejected: Option<Proposal>,
    /// Every earlier rejection's feedback (not the current `feedback`), oldest first.
    #[serde(default)]
    pub earlier_feedback: Vec<ReviewerFeedback>,
    pub bounds: Bounds,
    /// Also roll back when perplexity ends more than this (relative) above the dense model.
    #[serde(default)]
    pub ceiling: Option<f64>,
    /// Also roll back when the knowledge probe's accuracy falls more than this (absolute)
    /// below the checkpoint's.
    #[serde(default)]
    pub probe_max_drop: Option<f64>,
    /// The session stops after this iteration.
    #[serde(default)]
    pub max_iters: usize,
    #[serde(default)]
    pub probe: Option<ProbeView>,
}

impl AgentContext {
    pub fn layer(&self, name: &str) -> Option<&LayerRow> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// A small made-up context (2 blocks, one earlier rollback) for tests and examples.
    pub fn example() -> AgentContext {
        let mut layers = Vec::new();
        // Block 1 first so the prompt's ordering is exercised.
        for block in [1usize, 0] {
            for (i, kind) in crate::model::kind::LinearKind::ALL.into_iter().enumerate() {
                let x = (block * 7 + i) as f64;
                layers.push(LayerRow {
                    name: format!("model.layers.{block}.{}", kind.path()),
                    block,
                    kind: kind.short().to_string(),
                    s: 0.01 * (x + 1.0),
                    g: 0.002 * (14.0 - x),
                    z_s: (x - 6.5) / 4.0,
                    z_g: (6.5 - x) / 8.0,
                    sparsity: if block == 0 { 0.3 } else { 0.2 },
                    params: 4096,
                });
            }
        }
        let change = |name: &str, from: f64, to: f64| LayerChange {
            name: name.into(),
            from,
            to,
        };
        AgentContext {
            model: "tiny-llama".into(),
            iteration: 3,
            target: 0.45,
            global_sparsity: 0.25,
            threshold: 0.05,
            dense_ppl: 10.0,
            current_ppl: 10.8,
            layers,
            history: vec![
                StepOutcome {
                    iteration: 1,
                    changes: vec![change("model.layers.0.mlp.up_proj", 0.2, 0.3)],
                    ppl_before: 10.5,
                    ppl_after: 10.8,
                    accepted: true,
                    global_sparsity_after: 0.25,
                    note: "accepted: +2.9% <= 5.0%".into(),
                    edited: false,
                    probe_before: None,
                    probe_after: None,
                    undone_to: None,
                },
                StepOutcome {
                    iteration: 2,
                    changes: vec![change("model.layers.1.self_attn.q_proj", 0.2, 0.3)],
                    ppl_before: 10.8,
                    ppl_after: 11.6,
                    accepted: false,
                    global_sparsity_after: 0.25,
                    note: "rolled back: +7.4% > 5.0%".into(),
                    edited: false,
                    probe_before: None,
                    probe_after: None,
                    undone_to: None,
                },
            ],
            reflections: vec!["Attention projections in block 1 are fragile.".into()],
            reflection_steps: vec![2],
            feedback: Some("Leave the q projections alone for now.".into()),
            rejected: Some(Proposal {
                layers: vec![LayerTarget {
                    name: "model.layers.0.self_attn.q_proj".into(),
                    sparsity: 0.4,
                }],
                reasoning: "Lowest z in block 0.".into(),
            }),
            earlier_feedback: vec![ReviewerFeedback {
                iteration: 1,
                feedback: "Go slower on the MLPs.".into(),
                rejected: Proposal {
                    layers: vec![LayerTarget {
                        name: "model.layers.0.mlp.up_proj".into(),
                        sparsity: 0.3,
                    }],
                    reasoning: "Largest layer.".into(),
                },
            }],
            bounds: Bounds::default(),
            ceiling: None,
            probe_max_drop: None,
            max_iters: 60,
            probe: None,
        }
    }
}

/// Target sparsity of one layer (absolute, not an increment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTarget {
    pub name: String,
    pub sparsity: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub layers: Vec<LayerTarget>,
    pub reasoning: String,
}

/// Token counts as the server reported them (0 when it did not), and the cost in USD when
/// the server reports one (OpenRouter's `usage.cost`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        // Saturating: counts come from the server, and a wild one must not panic.
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cost = match (self.cost, o.cost) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }
}

/// Position of a kind inside a block, for a stable table order (q k v o gate up down).
pub fn kind_order(kind: &str) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len())
}

/// A block's linear layers in the order they compute.
pub const KINDS: [&str; 7] = crate::model::kind::SHORT_NAMES;

/// (block, kind index) of a Hugging Face linear layer path such as
/// `model.layers.12.mlp.up_proj`.
pub fn place(name: &str) -> Option<(usize, usize)> {
    let parts: Vec<&str> = name.split('.').collect();
    let block = parts
        .windows(2)
        .find(|w| matches!(w[0], "layers" | "h" | "blocks"))
        .and_then(|w| w[1].parse().ok())?;
    let last = parts.last()?.trim_end_matches("_proj");
    let kind = KINDS.iter().position(|k| *k == last)?;
    Some((block, kind))
}

/// Sorts layer names in model order (block 2 before block 10, q before down), as the
/// profile table lists them; names that are no block's layer go last, as text.
pub fn model_order(name: &str) -> (bool, Option<(usize, usize)>, &str) {
    let at = place(name);
    (at.is_none(), at, name)
}
