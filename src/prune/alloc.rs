//! How a global target is spread over layers: uniform, OWL, or an explicit YAML map.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

use super::select::Pattern;
use crate::model::{Decoder, LinearId};

/// Target pattern per linear layer.
pub type Plan = BTreeMap<LinearId, Pattern>;

pub fn uniform(d: &Decoder, p: Pattern) -> Plan {
    d.linear_ids().map(|id| (id, p)).collect()
}

/// Read `layer name: sparsity` pairs; layers not named stay dense.
pub fn from_yaml(path: &Path, d: &Decoder) -> Result<Plan> {
    let map = read_map(path)?;
    let mut plan = Plan::new();
    for (name, s) in map {
        let Some(id) = d.find_linear(&name) else {
            bail!(
                "{}: unknown layer `{name}` (layers are named like model.layers.0.mlp.down_proj)",
                path.display()
            );
        };
        ensure!(
            (0.0..1.0).contains(&s),
            "{}: sparsity {s} for `{name}` is outside [0, 1)",
            path.display()
        );
        plan.insert(id, Pattern::Unstructured(s));
    }
    Ok(plan)
}

/// The file's `name: sparsity` pairs, each checked to be a string and a number.
fn read_map(path: &Path) -> Result<BTreeMap<String, f64>> {
    crate::runtime::refuse_device(path).context("--allocation")?;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "--allocation {}: not uniform, owl or a readable YAML file of layer sparsities",
            path.display()
        )
    })?;
    let expected = || {
        format!(
            "{}: expected a map of layer name to sparsity",
            path.display()
        )
    };
    // Read as a YAML value first: it refuses a layer named twice, which a map would take
    // silently (the last one winning).
    let value: serde_yaml::Value = serde_yaml::from_str(&text).with_context(expected)?;
    let serde_yaml::Value::Mapping(entries) = value else {
        bail!("{}", expected());
    };
    let mut map = BTreeMap::new();
    for (key, v) in entries {
        let Some(name) = key.as_str() else {
            bail!(
                "{}: layer name {} is not a string",
                path.display(),
                one_line(&key)
            );
        };
        let Some(s) = v.as_f64() else {
            bail!(
                "{}: the sparsity of `{name}` is {}, not a number",
                path.display(),
                one_line(&v)
            );
        };
        map.insert(name.to_string(), s);
    }
    ensure!(!map.is_empty(), "{}: names no layer", path.display());
    Ok(map)
}

/// A YAML value as the file might spell it, on one line and cut short.
fn one_line(v: &serde_yaml::Value) -> String {
    let text = serde_yaml::to_string(v).unwrap_or_default();
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(40) {
        Some((i, _)) => format!("`{}...`", &flat[..i]),
        None => format!("`{flat}`"),
    }
}

/// Share (in %) of scores above `m` times the mean: OWL's layer outlier ratio.
pub fn outlier_ratio(scores: &[f32], m: f64) -> f64 {
    let mean = scores.iter().map(|x| *x as f64).sum::<f64>() / scores.len().max(1) as f64;
    let n = scores.iter().filter(|x| **x as f64 > m * mean).count();
    100.0 * n as f64 / scores.len().max(1) as f64
}

/// OWL per-block sparsities from per-block outlier ratios: ratios are scaled to [0, 2λ],
/// centred so the mean density is 1 − s, and more outliers get more density.
pub fn owl_sparsities(ratios: &[f64], s: f64, lambda: f64) -> Vec<f64> {
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(*r), b.max(*r)));
    if hi - lo <= 0.0 {
        return vec![s; ratios.len()];
    }
    let scaled: Vec<f64> = ratios
        .iter()
        .map(|r| (r - lo) / (hi - lo) * lambda * 2.0)
        .collect();
    let mean = scaled.iter().sum::<f64>() / scaled.len() as f64;
    scaled
        .iter()
        .map(|x| 1.0 - (x - mean + (1.0 - s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A wrong value names its layer and shows what the file says (serde named neither).
    #[test]
    fn a_wrong_entry_names_its_layer_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "model.layers.0.mlp.up_proj: 0.3\nmodel.layers.1.mlp.up_proj: half\n",
                "the sparsity of `model.layers.1.mlp.up_proj` is `half`, not a number",
            ),
            (
                "model.layers.0.mlp.up_proj:\n",
                "the sparsity of `model.layers.0.mlp.up_proj` is `null`, not a number",
            ),
            (
                "model.layers.0.mlp.up_proj: [0.1, 0.2]\n",
                "is `- 0.1 - 0.2`, not a number",
            ),
            ("7: 0.5\n", "layer name `7` is not a string"),
            ("- 0.5\n", "expected a map of layer name to sparsity"),
        ];
        for (text, want) in cases {
            let f = dir.path().join("a.yaml");
            std::fs::write(&f, text).unwrap();
            let e = format!("{:#}", read_map(&f).unwrap_err());
            assert!(e.starts_with(&format!("{}: ", f.display())), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
        std::fs::write(dir.path().join("b.yaml"), "a: 1\nb: 0.25\n").unwrap();
        let m = read_map(&dir.path().join("b.yaml")).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [("a".into(), 1.0), ("b".into(), 0.25)]
        );
    }

    #[test]
    fn owl_keeps_the_mean_and_favours_outliers() {
        let s = owl_sparsities(&[1.0, 3.0, 2.0, 6.0], 0.5, 0.08);
        let mean = s.iter().sum::<f64>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-12);
        // By hand from OWL's code: ratios scaled to [0, 2λ] = [0, 0.064, 0.032, 0.16],
        // mean 0.064; sparsity 1 - (x - mean + 1 - S). More outliers, less pruning.
        let want = [0.564, 0.5, 0.532, 0.404];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
        assert_eq!(owl_sparsities(&[2.0, 2.0], 0.4, 0.08), vec![0.4, 0.4]);
    }

    #[test]
    fn outlier_ratio_counts_above_m_times_mean() {
        let mut v = vec![1.0f32; 99];
        v.push(1000.0);
        assert!((outlier_ratio(&v, 5.0) - 1.0).abs() < 1e-12);
    }
}
