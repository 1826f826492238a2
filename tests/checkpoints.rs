//! Cheap checkpoints: a loaded model keeps only its masked weights resident; shrinking a
//! mask (a rollback) re-reads the unmasked values from the files, bit-identical to a fresh
//! load, and refuses when the files changed underneath.

use arborist::model::{LinearId, LinearKind, LoadedModel, Mask};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

fn values(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn every(rows: usize, cols: usize, stride: usize) -> Arc<Mask> {
    let mut m = Mask::empty(rows, cols);
    for r in 0..rows {
        for c in 0..cols {
            if (r * cols + c).is_multiple_of(stride) {
                m.prune(r, c);
            }
        }
    }
    Arc::new(m)
}

fn masked(w: &[u32], m: &Mask) -> Vec<u32> {
    w.iter()
        .enumerate()
        .map(|(i, &v)| {
            if m.is_pruned(i / m.cols(), i % m.cols()) {
                0.0f32.to_bits() // +0.0, as `W[mask] = 0` writes it
            } else {
                v
            }
        })
        .collect()
}

const ID: LinearId = LinearId {
    block: 3,
    kind: LinearKind::Up,
};

fn copy_bundled(dir: &std::path::Path) {
    arborist::model::bundled::write_files(dir).unwrap();
}

#[test]
fn rollback_rereads_the_unmasked_weight_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    copy_bundled(tmp.path());
    let spec = tmp.path().to_str().unwrap();
    let mut m = LoadedModel::load(spec, &Device::Cpu, DType::F32).unwrap();
    let fresh = values(&m.decoder.linear(ID).weight().unwrap());
    let (r, c) = (
        m.decoder.linear(ID).out_features(),
        m.decoder.linear(ID).in_features(),
    );
    assert!(m
        .decoder
        .linear_ids()
        .all(|i| !m.decoder.linear(i).dense_resident()));

    // Grow 1/4 → 1/2 (a 1/2-stride mask contains the 1/4-stride one), then shrink back.
    let quarter = every(r, c, 4);
    let half = every(r, c, 2);
    assert!(quarter.is_subset_of(&half));
    m.decoder.set_mask(ID, Some(quarter.clone())).unwrap();
    assert_eq!(
        values(&m.decoder.linear(ID).weight().unwrap()),
        masked(&fresh, &quarter)
    );
    m.decoder.set_mask(ID, Some(half.clone())).unwrap();
    assert_eq!(
        values(&m.decoder.linear(ID).weight().unwrap()),
        masked(&fresh, &half)
    );
    m.decoder.set_mask(ID, Some(quarter.clone())).unwrap();
    assert_eq!(
        values(&m.decoder.linear(ID).weight().unwrap()),
        masked(&fresh, &quarter)
    );
    m.decoder.set_mask(ID, None).unwrap();
    assert_eq!(values(&m.decoder.linear(ID).weight().unwrap()), fresh);
    assert!(!m.decoder.linear(ID).dense_resident());
}

#[test]
fn rollback_refuses_when_the_weights_file_changed() {
    let tmp = tempfile::tempdir().unwrap();
    copy_bundled(tmp.path());
    let spec = tmp.path().to_str().unwrap();
    let mut m = LoadedModel::load(spec, &Device::Cpu, DType::F32).unwrap();
    let l = m.decoder.linear(ID);
    let mask = every(l.out_features(), l.in_features(), 2);
    m.decoder.set_mask(ID, Some(mask)).unwrap();
    let file = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"    ");
    std::fs::write(&file, bytes).unwrap();
    let err = m.decoder.set_mask(ID, None).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("changed on disk"), "{err}");
    assert!(err.contains("model.layers.3.mlp.up_proj"), "{err}");
}
