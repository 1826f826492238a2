//! Damage to tokenizer.json (cut, invalid, its model or vocabulary broken) and to
//! tokenizer_config.json, which `eval` does not read.

use crate::damage::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use std::path::Path;

/// An edit of the parsed tokenizer.json, described.
type Edit = (&'static str, fn(&mut Value));

const EDITS: &[Edit] = &[
    ("`model` removed", |t| {
        t.as_object_mut().unwrap().remove("model");
    }),
    ("`model` null", |t| t["model"] = Value::Null),
    ("`model` {}", |t| t["model"] = json!({})),
    ("`model.type` Bogus", |t| {
        t["model"]["type"] = json!("Bogus")
    }),
    ("`model.vocab` {}", |t| t["model"]["vocab"] = json!({})),
    ("`model.vocab` []", |t| t["model"]["vocab"] = json!([])),
    ("`model.merges` \"x\"", |t| {
        t["model"]["merges"] = json!("x")
    }),
    ("`model.merges` [[a, b]]", |t| {
        t["model"]["merges"] = json!([["a", "b"]])
    }),
    ("`model.unk_token` not in the vocabulary", |t| {
        t["model"]["unk_token"] = json!("<unk>")
    }),
    ("`model.dropout` 2.0", |t| {
        t["model"]["dropout"] = json!(2.0)
    }),
    ("every vocab id + 256 (past vocab_size)", |t| {
        for v in t["model"]["vocab"].as_object_mut().unwrap().values_mut() {
            *v = json!(v.as_u64().unwrap() + 256);
        }
    }),
    ("vocab id of `t` 2^40", |t| {
        t["model"]["vocab"]["t"] = json!(1u64 << 40)
    }),
    ("vocab id of `t` -1", |t| {
        t["model"]["vocab"]["t"] = json!(-1)
    }),
    ("vocab id of `t` \"5\"", |t| {
        t["model"]["vocab"]["t"] = json!("5")
    }),
    ("vocab id of `t` 259", |t| {
        t["model"]["vocab"]["t"] = json!(259)
    }),
    ("vocab id of `t` 1000000", |t| {
        t["model"]["vocab"]["t"] = json!(1_000_000)
    }),
    ("half the vocabulary removed", |t| {
        let v = t["model"]["vocab"].as_object_mut().unwrap();
        let keys: Vec<String> = v.keys().step_by(2).cloned().collect();
        for k in keys {
            v.remove(&k);
        }
    }),
    ("`pre_tokenizer` of unknown type", |t| {
        t["pre_tokenizer"] = json!({"type": "Nope"})
    }),
    ("`pre_tokenizer` 5", |t| t["pre_tokenizer"] = json!(5)),
    ("`decoder` of unknown type", |t| {
        t["decoder"] = json!({"type": "Nope"})
    }),
    ("`normalizer` []", |t| t["normalizer"] = json!([])),
    ("`added_tokens` [{id: 5}]", |t| {
        t["added_tokens"] = json!([{"id": 5}])
    }),
    ("`added_tokens` an id of 2^40", |t| {
        t["added_tokens"] = json!([{"id": 1u64 << 40, "content": "x", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}])
    }),
    ("`added_tokens` \"x\"", |t| t["added_tokens"] = json!("x")),
    ("`truncation` {max_length: -1}", |t| {
        t["truncation"] = json!({"max_length": -1})
    }),
    ("`padding` \"x\"", |t| t["padding"] = json!("x")),
    ("`version` 5", |t| t["version"] = json!(5)),
    ("the whole file []", |t| *t = json!([])),
    ("the whole file null", |t| *t = Value::Null),
    ("the whole file {}", |t| *t = json!({})),
];

pub fn damage(rng: &mut StdRng, dir: &Path) -> Damage {
    let path = dir.join("tokenizer.json");
    match rng.gen_range(0..6) {
        0 => Damage::new(
            truncate(rng, &path, None),
            Expect::MustFail,
            Blame::Tokenizer,
        ),
        1 => Damage::new(invalid_utf8(rng, &path), Expect::MustFail, Blame::Tokenizer),
        2 => {
            let len = std::fs::read(&path).unwrap().len();
            let count = rng.gen_range(1..=3);
            let what = flip(rng, &path, 0..len, count);
            Damage::new(what, Expect::MayRun, Blame::Tokenizer)
        }
        _ => {
            let (what, edit) = pick(rng, EDITS);
            let mut t = read_json(&path);
            edit(&mut t);
            write_json(&path, &t);
            let what = format!("tokenizer.json: {what}");
            Damage::new(what, Expect::MayRun, Blame::Tokenizer)
        }
    }
}

/// tokenizer_config.json: `eval` never reads it, `prune` copies it as it is.
pub fn damage_config(rng: &mut StdRng, dir: &Path) -> Damage {
    let path = dir.join("tokenizer_config.json");
    let what = match rng.gen_range(0..4) {
        0 => truncate(rng, &path, None),
        1 => invalid_utf8(rng, &path),
        2 => {
            let len = std::fs::read(&path).unwrap().len();
            flip(rng, &path, 0..len, 1)
        }
        _ => {
            let (k, new) = pick(
                rng,
                &[
                    ("chat_template", json!("{% for m in messages %}")),
                    ("model_max_length", json!(-1)),
                    ("model_max_length", json!(1e300)),
                    ("tokenizer_class", json!("Bogus")),
                    ("eos_token", json!({"content": 5})),
                ],
            );
            let mut t = read_json(&path);
            t[k] = new.clone();
            write_json(&path, &t);
            format!("tokenizer_config.json: `{k}` set to {new}")
        }
    };
    Damage::new(what, Expect::MustRunSame, Blame::Nothing)
}
