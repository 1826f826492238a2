//! Damage to a sharded model: its model.safetensors.index.json, or a shard it lists.

use crate::bases::INDEX;
use crate::damage::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use std::path::Path;

/// One weight_map entry, at random, set to `new`.
fn map_one(
    rng: &mut StdRng,
    path: &Path,
    index: &mut Value,
    tensors: &[String],
    new: Value,
) -> String {
    let t = pick(rng, tensors);
    let old = index["weight_map"][&t].clone();
    index["weight_map"][&t] = new.clone();
    write_json(path, index);
    format!("{INDEX}: weight_map[`{t}`] {old} -> {new}")
}

pub fn damage(rng: &mut StdRng, dir: &Path) -> Damage {
    let path = dir.join(INDEX);
    let mut index = read_json(&path);
    let shards: Vec<String> = {
        let mut v: Vec<String> = (index["weight_map"].as_object().unwrap().values())
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let tensors: Vec<String> = index["weight_map"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let whole = || Blame::Index { shards: vec![] };
    match rng.gen_range(0..9) {
        0 => {
            let shard = pick(rng, &shards);
            std::fs::remove_file(dir.join(&shard)).unwrap();
            let what = format!("shard {shard} deleted");
            Damage::new(
                what,
                Expect::MustFail,
                Blame::Index {
                    shards: vec![shard],
                },
            )
        }
        1 => {
            let shard = pick(
                rng,
                &[
                    "model-00003-of-00002.safetensors",
                    "missing.safetensors",
                    "sub/dir/x.safetensors",
                    "MODEL-00001-OF-00002.SAFETENSORS",
                    "model-00001-of-00002.safetensors ",
                ],
            );
            let what = map_one(rng, &path, &mut index, &tensors, json!(shard));
            Damage::new(
                what,
                Expect::MustFail,
                Blame::Index {
                    shards: vec![shard.into()],
                },
            )
        }
        2 => Damage::new(truncate(rng, &path, None), Expect::MustFail, whole()),
        3 => Damage::new(invalid_utf8(rng, &path), Expect::MustFail, whole()),
        4 => {
            let new = pick(
                rng,
                &[
                    json!(null),
                    json!(5),
                    json!(""),
                    json!("../x.safetensors"),
                    json!("/tmp"),
                ],
            );
            let what = map_one(rng, &path, &mut index, &tensors, new);
            Damage::new(what, Expect::MustFail, whole())
        }
        5 => {
            let new = pick(
                rng,
                &[json!(null), json!([]), json!({}), json!("x"), json!(5)],
            );
            index["weight_map"] = new.clone();
            write_json(&path, &index);
            let what = format!("{INDEX}: weight_map set to {new}");
            Damage::new(what, Expect::MustFail, whole())
        }
        6 => {
            // The index names every shard still, if not each tensor's: every listed shard
            // is read, so the model is whole.
            let what = match rng.gen_bool(0.5) {
                true => {
                    let other = pick(rng, &shards);
                    map_one(rng, &path, &mut index, &tensors, json!(other))
                }
                false => {
                    let t = pick(rng, &tensors);
                    index["weight_map"].as_object_mut().unwrap().remove(&t);
                    write_json(&path, &index);
                    format!("{INDEX}: weight_map entry `{t}` removed")
                }
            };
            Damage::new(what, Expect::MayRun, whole())
        }
        7 => {
            let shard = dir.join(pick(rng, &shards));
            let what = truncate(rng, &shard, None);
            Damage::new(what, Expect::MustFail, Blame::Weights(shard))
        }
        _ => {
            let len = std::fs::read(&path).unwrap().len();
            let what = flip(rng, &path, 0..len, 1);
            Damage::new(what, Expect::MayRun, whole())
        }
    }
}
