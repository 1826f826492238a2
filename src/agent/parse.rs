//! Tolerant reading of an agent's reply and strict validation of the proposal in it.
//!
//! Models wrap JSON in fences or prose, so extraction scans for the first balanced JSON
//! object that has a `layers` field. Validation never clamps: it lists every problem, one
//! line each, so the list can go back to the model for a repair.

use serde_json::{json, Value};

use super::context::{AgentContext, LayerTarget, Proposal};

/// Slack for comparing sparsities that went through decimal text.
const EPS: f64 = 1e-9;

/// JSON schema of a proposal, in the shape OpenAI's strict structured outputs accept.
pub fn proposal_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "layers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "sparsity": {"type": "number"}
                    },
                    "required": ["name", "sparsity"],
                    "additionalProperties": false
                }
            },
            "reasoning": {"type": "string"}
        },
        "required": ["layers", "reasoning"],
        "additionalProperties": false
    })
}

/// Reads a proposal out of reply text and checks it against the context.
pub fn parse_and_validate(text: &str, ctx: &AgentContext) -> Result<Proposal, Vec<String>> {
    let p = parse_proposal(text)?;
    validate(&p, ctx)?;
    Ok(p)
}

/// The first JSON object in `text` (bare, fenced or inside prose) that has a `layers` field.
pub fn extract_json(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    let starts = bytes.iter().enumerate().filter(|(_, &c)| c == b'{');
    for (start, _) in starts {
        let Some(end) = balanced_end(bytes, start) else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&text[start..end]) {
            if v.get("layers").is_some() {
                return Some(v);
            }
        }
    }
    None
}

/// End (exclusive) of the bracketed value opening at `start`, skipping brackets in strings.
fn balanced_end(b: &[u8], start: usize) -> Option<usize> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, &c) in b.iter().enumerate().skip(start) {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Shape checks only; see [`validate`] for the checks against the profile.
pub fn parse_proposal(text: &str) -> Result<Proposal, Vec<String>> {
    let Some(v) = extract_json(text) else {
        return Err(vec![
            "reply: no JSON object with a \"layers\" field found; answer with the JSON format shown"
                .into(),
        ]);
    };
    let mut problems = Vec::new();
    let reasoning = match v.get("reasoning") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let items: Vec<(Option<String>, Option<&Value>)> = match &v["layers"] {
        Value::Array(a) => a
            .iter()
            .map(|it| {
                let name = it.get("name").or_else(|| it.get("layer"));
                let name = name.and_then(Value::as_str).map(str::to_string);
                (name, it.get("sparsity").or_else(|| it.get("target")))
            })
            .collect(),
        // {"layers": {"model.layers.0.mlp.up_proj": 0.3}} is unambiguous enough to accept.
        Value::Object(m) => m.iter().map(|(k, v)| (Some(k.clone()), Some(v))).collect(),
        other => {
            return Err(vec![format!(
                "layers: must be a list of {{\"name\", \"sparsity\"}} objects, got {}",
                short(other)
            )])
        }
    };
    let mut layers = Vec::new();
    for (i, (name, sp)) in items.into_iter().enumerate() {
        let Some(name) = name else {
            problems.push(format!("layers[{i}]: missing string field \"name\""));
            continue;
        };
        let sparsity = match sp {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match sparsity {
            Some(sparsity) => layers.push(LayerTarget { name, sparsity }),
            None => problems.push(format!(
                "{name}: sparsity must be a number, got {}",
                sp.map_or("nothing".to_string(), short)
            )),
        }
    }
    if problems.is_empty() {
        Ok(Proposal { layers, reasoning })
    } else {
        Err(problems)
    }
}

/// Every way the proposal breaks the rules, one line each, in proposal order.
pub fn validate(p: &Proposal, ctx: &AgentContext) -> Result<(), Vec<String>> {
    let b = &ctx.bounds;
    let mut problems = Vec::new();
    if p.layers.is_empty() {
        problems.push("layers: empty; propose at least one layer".to_string());
    }
    if p.layers.len() > b.max_layers {
        problems.push(format!(
            "layers: {} entries, more than max_layers {} per step",
            p.layers.len(),
            b.max_layers
        ));
    }
    for (i, t) in p.layers.iter().enumerate() {
        let n = &t.name;
        let count = p.layers.iter().filter(|o| o.name == *n).count();
        if count > 1 {
            if p.layers[..i].iter().any(|o| o.name == *n) {
                continue;
            }
            problems.push(format!("{n}: listed {count} times; list each layer once"));
        }
        let Some(row) = ctx.layer(n) else {
            problems.push(format!(
                "{n}: unknown layer name; use a name from the profile table"
            ));
            continue;
        };
        let (to, cur) = (t.sparsity, row.sparsity);
        if !to.is_finite() || !(0.0..1.0).contains(&to) {
            problems.push(format!(
                "{n}: sparsity {} is not a fraction in [0, 1) (e.g. 0.35 for 35%)",
                frac(to)
            ));
        } else if to < cur - EPS {
            problems.push(format!(
                "{n}: sparsity {} is below its current sparsity {} (masks only grow)",
                frac(to),
                frac(cur)
            ));
        } else if to <= cur + EPS {
            problems.push(format!(
                "{n}: sparsity {} is its current sparsity already (no change); leave the layer out",
                frac(to)
            ));
        } else if to > b.max_layer_sparsity + EPS {
            problems.push(format!(
                "{n}: sparsity {} is above max_layer_sparsity {}",
                frac(to),
                frac(b.max_layer_sparsity)
            ));
        } else if to - cur > b.max_step + EPS {
            problems.push(format!(
                "{n}: sparsity {} raises it by {} from {}, more than max_step {} (at most {})",
                frac(to),
                frac(to - cur),
                frac(cur),
                frac(b.max_step),
                frac((cur + b.max_step).min(b.max_layer_sparsity))
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A sparsity as short decimal text: 0.35, not 0.35000000000000003.
pub fn frac(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

/// A JSON value in a problem line: short, one line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
