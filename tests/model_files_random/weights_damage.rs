//! Damage to a safetensors file: cut short, its header's length or JSON changed, a tensor's
//! dtype, shape or data_offsets changed, a tensor dropped, renamed or doubled, its values
//! overwritten.

use crate::damage::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// A safetensors file as its header and its data.
struct St {
    header: Map<String, Value>,
    data: Vec<u8>,
}

impl St {
    fn read(path: &Path) -> St {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        St {
            header,
            data: bytes[8 + n..].to_vec(),
        }
    }

    fn write(&self, path: &Path) {
        let h = serde_json::to_vec(&self.header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(&self.data);
        std::fs::write(path, out).unwrap();
    }

    fn names(&self) -> Vec<String> {
        self.header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect()
    }

    fn entry(&mut self, name: &str) -> &mut Map<String, Value> {
        self.header[name].as_object_mut().unwrap()
    }

    /// Byte span of tensor `name` in `data`.
    fn span(&self, name: &str) -> (usize, usize) {
        let o = &self.header[name]["data_offsets"];
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    }
}

fn header_len(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

fn weight_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    v.sort();
    v
}

/// Element size of a safetensors dtype this test writes.
fn size_of(dtype: &str) -> usize {
    match dtype {
        "F32" => 4,
        _ => 2,
    }
}

/// `x` in a stored dtype's bytes (little-endian).
fn encode(dtype: &str, x: f32) -> Vec<u8> {
    match dtype {
        "F32" => x.to_le_bytes().to_vec(),
        "F16" => half::f16::from_f32(x).to_le_bytes().to_vec(),
        _ => half::bf16::from_f32(x).to_le_bytes().to_vec(),
    }
}

pub fn damage(rng: &mut StdRng, dir: &Path) -> Damage {
    let files = weight_files(dir);
    let path = pick(rng, &files);
    let file = name(&path);
    let blame = Blame::Weights(path.clone());
    let mut st = St::read(&path);
    let names = st.names();
    let t = pick(rng, &names);
    let (begin, end) = st.span(&t);
    let shape: Vec<u64> = (st.header[&t]["shape"].as_array().unwrap().iter())
        .map(|d| d.as_u64().unwrap())
        .collect();
    let dtype = st.header[&t]["dtype"].as_str().unwrap().to_string();
    // README: a header entry that does not fit its data, or a tensor missing, is named.
    let named = Blame::Tensor(t.clone());
    let edit = |st: &mut St, key: &str, new: Value| -> String {
        let old = st.entry(&t).insert(key.into(), new.clone()).unwrap();
        st.write(&path);
        format!("{file}: tensor `{t}`: {key} {old} -> {new}")
    };
    match rng.gen_range(0..16) {
        0 => {
            // Half the cuts fall in the header, the rest in the data.
            let within = rng.gen_bool(0.5).then(|| header_len(&path));
            Damage::new(truncate(rng, &path, within), Expect::MustFail, blame)
        }
        1 => Damage::new(flip(rng, &path, 0..8, 1), Expect::MustFail, blame),
        2 => {
            let h = header_len(&path);
            let count = rng.gen_range(1..=2);
            let what = flip(rng, &path, 8..h, count);
            Damage::new(what, Expect::MayRun, blame)
        }
        3 => {
            let h = header_len(&path);
            Damage::new(change_digit(rng, &path, 8..h), Expect::MayRun, blame)
        }
        4 => {
            let pool = [
                "F16", "BF16", "F32", "F64", "I64", "I32", "U32", "I8", "U8", "BOOL", "F8_E4M3",
                "F8_E5M2", "F4", "Q4_0", "f32", "",
            ];
            let new = loop {
                let d = pick(rng, &pool);
                if d != dtype {
                    break d;
                }
            };
            // F16 and BF16 swapped read as other values of the same size: a valid file.
            let halves = ["F16", "BF16"];
            let expect = match halves.contains(&new) && halves.contains(&dtype.as_str()) {
                true => Expect::MayRun,
                false => Expect::MustFail,
            };
            let mut d = Damage::new(edit(&mut st, "dtype", json!(new)), expect, named);
            d.non_finite_ok = true;
            d
        }
        5 => {
            let n: u64 = shape.iter().product();
            let mut sizes = vec![
                json!([n]),
                json!([]),
                json!([0]),
                json!([1u64 << 40, 1u64 << 40]),
                json!([1u64 << 32, 1u64 << 32, 16]),
                json!([u64::MAX, 2]),
                json!([n, 1]),
            ];
            if let [a, b] = shape[..] {
                sizes.extend([json!([b, a]), json!([a * 2, b / 2])]);
            }
            // Not a list of sizes: a malformed header, said by the file and its column.
            let malformed = [
                json!([-1, n]),
                json!([1.5, n]),
                json!(["a"]),
                json!(n),
                json!(null),
            ];
            let (new, blame) = match rng.gen_ratio(2, 3) {
                true => (pick(rng, &sizes), named),
                false => (pick(rng, &malformed), blame),
            };
            let expect = match new == json!(shape) {
                true => Expect::MayRun,
                false => Expect::MustFail,
            };
            Damage::new(edit(&mut st, "shape", new), expect, blame)
        }
        6 => {
            // The same bytes read as another float type: an f32 tensor as a half type of
            // twice the elements, a half one as f32 of half as many.
            let mut reread = shape.clone();
            let new = match dtype.as_str() {
                "F32" => {
                    reread.push(2);
                    pick(rng, &["F16", "BF16"])
                }
                _ => {
                    *reread.last_mut().unwrap() /= 2;
                    "F32"
                }
            };
            st.entry(&t).insert("shape".into(), json!(reread));
            let what = edit(&mut st, "dtype", json!(new));
            Damage::new(format!("{what}, shape {reread:?}"), Expect::MustFail, named)
        }
        7 => {
            let len = st.data.len() as u64;
            let (b, e) = (begin as u64, end as u64);
            let past = len + 1 + rng.gen_range(0..1000u64);
            let new = pick(
                rng,
                &[
                    json!([b, past]),
                    json!([e, b]),
                    json!([0, u64::MAX]),
                    json!([b, e + 1]),
                    json!([b + 1, e]),
                    json!([b]),
                    json!([]),
                    json!([b.to_string(), e.to_string()]),
                    json!([-1, e]),
                    json!([b, e as f64 + 0.5]),
                    json!([1u64 << 40, (1u64 << 40) + e - b]),
                ],
            );
            Damage::new(edit(&mut st, "data_offsets", new), Expect::MustFail, named)
        }
        8 => {
            st.header.remove(&t);
            st.write(&path);
            let what = format!("{file}: header entry `{t}` removed (data kept)");
            Damage::new(what, Expect::MustFail, blame)
        }
        9 | 10 => {
            // Rewritten without the tensor or under another name: a valid file.
            let all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
            let mut all: std::collections::HashMap<_, _> = all.into_iter().collect();
            let tensor = all.remove(&t).unwrap();
            let what = if rng.gen_bool(0.5) {
                format!("{file}: tensor `{t}` removed")
            } else {
                let names: Vec<String> = [
                    t.strip_prefix("model.").unwrap_or("x").to_string(),
                    format!("base_model.{t}"),
                    t.replacen("layers.", "layers.7", 1),
                    t.replacen('e', "E", 1),
                    format!("{t} "),
                ]
                .into_iter()
                .filter(|n| *n != t)
                .collect();
                let new = pick(rng, &names);
                all.insert(new.clone(), tensor);
                format!("{file}: tensor `{t}` renamed `{new}`")
            };
            candle_core::safetensors::save(&all, &path).unwrap();
            Damage::new(what, Expect::MustFail, named)
        }
        11 | 12 => {
            let value = pick(
                rng,
                &[
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    3e38,
                    -3e38,
                    65504.0,
                ],
            );
            let size = size_of(&dtype);
            let at = begin + rng.gen_range(0..(end - begin) / size) * size;
            st.data[at..at + size].copy_from_slice(&encode(&dtype, value));
            st.write(&path);
            let what = format!("{file}: tensor `{t}`: the value at data byte {at} set to {value}");
            let mut d = Damage::new(what, Expect::MayRun, named);
            d.non_finite_ok = value.is_finite();
            d
        }
        13 => {
            let h = header_len(&path);
            let len = std::fs::read(&path).unwrap().len();
            let count = rng.gen_range(1..=4);
            let what = flip(rng, &path, h..len, count);
            let mut d = Damage::new(what, Expect::MayRun, blame);
            d.non_finite_ok = true;
            d
        }
        14 => {
            let new = pick(
                rng,
                &[
                    json!(5),
                    json!({"format": 5}),
                    json!({"format": null}),
                    json!([]),
                    json!("pt"),
                    json!({"format": "pt", "total": {"a": 1}}),
                ],
            );
            st.header.insert("__metadata__".into(), new.clone());
            st.write(&path);
            let what = format!("{file}: __metadata__ set to {new}");
            Damage::new(what, Expect::MayRun, blame)
        }
        _ => match files.len() {
            // A tensor stored twice: which copy is meant is ambiguous.
            2.. => {
                let other = files.iter().find(|f| **f != path).unwrap();
                let mut o = St::read(other);
                let bytes = st.data[begin..end].to_vec();
                let at = o.data.len();
                o.data.extend(bytes);
                let mut entry = st.header[&t].clone();
                entry["data_offsets"] = json!([at, at + end - begin]);
                o.header.insert(t.clone(), entry);
                o.write(other);
                let what = format!("tensor `{t}` of {file} copied into {}", name(other));
                Damage::new(what, Expect::MustFail, named)
            }
            // A stray tensor: a warning, and the run goes on.
            _ => {
                let at = st.data.len();
                st.data.extend([0u8; 16]);
                let stray = "model.layers.9.extra.weight";
                st.header.insert(
                    stray.into(),
                    json!({"dtype": "F32", "shape": [4], "data_offsets": [at, at + 16]}),
                );
                st.write(&path);
                let what = format!("{file}: a stray tensor `{stray}` added");
                Damage::new(what, Expect::MayRun, blame)
            }
        },
    }
}
