//! The model fixtures and the references the evaluators are checked against: full
//! forwards of `Decoder::forward` and each protocol's prompt as its published code builds it.

use super::*;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// `arborist ARGS` must succeed; its JSON output.
pub(crate) fn eval_json(args: &[&str]) -> Value {
    let o = arborist(args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub(crate) fn load(dir: &Path) -> LoadedModel {
    LoadedModel::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

/// The qwen3 fixture with its last four merges replaced by "Ġ A".."Ġ D" (same vocab
/// size), so that " A".." D" are single tokens and MMLU takes the batched path.
pub(crate) fn qwen3_single_letter_tokens(dir: &Path) -> PathBuf {
    let src = fixture("qwen3");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut tok: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    let model = &mut tok["model"];
    let vocab = model["vocab"].as_object_mut().unwrap();
    let last: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = vocab
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        v.sort_by_key(|x| x.1);
        v[v.len() - 4..].to_vec()
    };
    for ((old, id), l) in last.iter().zip(["A", "B", "C", "D"]) {
        vocab.remove(old);
        vocab.insert(format!("Ġ{l}"), json!(id));
    }
    let merges = model["merges"].as_array_mut().unwrap();
    let n = merges.len();
    for (j, l) in ["A", "B", "C", "D"].iter().enumerate() {
        merges[n - 4 + j] = json!(["Ġ", l]);
    }
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    dir.to_path_buf()
}

pub(crate) fn log_softmax_rows(model: &LoadedModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.decoder.forward(&t, None).unwrap();
    candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// A solved or open example: Hendrycks' `format_example`, or lm-eval's `doc_to_text`
/// (which strips the question).
pub(crate) fn reference_example(it: &Item, answer: bool, lm_eval: bool) -> String {
    let c = &it.choices;
    let q = if lm_eval {
        it.question.trim()
    } else {
        &it.question
    };
    let mut s = format!(
        "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
        q, c[0], c[1], c[2], c[3]
    );
    if answer {
        s += &format!(" {}\n\n", ["A", "B", "C", "D"][it.answer]);
    }
    s
}

/// The task description. Hendrycks' `format_subject` puts a space before every word of
/// the subject, after "about " ("about  abstract algebra."); lm-eval writes one space.
pub(crate) fn reference_header(subject: &str, lm_eval: bool) -> String {
    let words: Vec<&str> = subject.split('_').collect();
    let about = if lm_eval {
        words.join(" ")
    } else {
        words.iter().map(|w| format!(" {w}")).collect()
    };
    format!("The following are multiple choice questions (with answers) about {about}.\n\n")
}

/// (predicted letter, log-probs, shots) from full forwards of prompt + continuation,
/// fitted to `max` positions as each protocol fits it: Hendrycks drops the last examples
/// until the prompt fits; lm-eval keeps them all and feeds the last `max` tokens of
/// prompt + continuation but its last (`(context + continuation)[-(max + 1):][:-1]`).
pub(crate) fn reference_prediction(
    model: &LoadedModel,
    it: &Item,
    dev: &[&Item],
    lm_eval: bool,
    max: usize,
) -> (String, [f64; 4], usize) {
    reference_prediction_by(model, it, dev, lm_eval, max, |t| model.encode(t).unwrap())
}

/// `reference_prediction` with the prompts tokenized by `encode`.
pub(crate) fn reference_prediction_by(
    model: &LoadedModel,
    it: &Item,
    dev: &[&Item],
    lm_eval: bool,
    max: usize,
    encode: impl Fn(&str) -> Vec<u32>,
) -> (String, [f64; 4], usize) {
    for k in (0..=5).rev() {
        let mut prompt = reference_header(it.subject, lm_eval);
        for d in &dev[..k] {
            prompt += &reference_example(d, true, lm_eval);
        }
        prompt += &reference_example(it, false, lm_eval);
        let ids = encode(&prompt);
        let conts: Vec<Vec<u32>> = ["A", "B", "C", "D"]
            .iter()
            .map(|l| {
                let joint = encode(&format!("{prompt} {l}"));
                assert!(joint.starts_with(&ids));
                joint[ids.len()..].to_vec()
            })
            .collect();
        let longest = conts.iter().map(Vec::len).max().unwrap();
        if !lm_eval && ids.len() + longest - 1 > max {
            continue;
        }
        let lp: Vec<f64> = conts
            .iter()
            .map(|c| {
                let all: Vec<u32> = ids.iter().chain(c).copied().collect();
                let from = all.len().saturating_sub(max + 1);
                let seq = &all[from..all.len() - 1];
                let rows = log_softmax_rows(model, seq);
                let first = ids.len() - from - 1;
                c.iter()
                    .enumerate()
                    .map(|(j, &t)| rows[first + j][t as usize] as f64)
                    .sum()
            })
            .collect();
        let best = (0..4).fold(0, |b, j| if lp[j] > lp[b] { j } else { b });
        return (
            ["A", "B", "C", "D"][best].to_string(),
            [lp[0], lp[1], lp[2], lp[3]],
            k,
        );
    }
    panic!("0-shot prompt does not fit");
}
