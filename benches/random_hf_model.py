#!/usr/bin/env python3
"""A Qwen3-shaped model with random bf16 weights, laid out as Hugging Face saves one:
config.json, three safetensors shards and their index, and a tokenizer copied from TOKDIR.

    python3 benches/random_hf_model.py benches/qwen3-4b.json OUT TOKDIR

TOKDIR: a directory with tokenizer.json and tokenizer_config.json whose ids fit the
config's vocabulary (`arborist bundled --out D` writes one). Weights are N(0, 0.02)
truncated to bf16, norms are ones, the seed is fixed (1234); needs numpy only. The README's
4B-shaped measurements used this with benches/qwen3-4b.json (8,044,936,192 bytes).
"""
import json, os, shutil, struct, sys

import numpy as np

cfg_path, out, tok = sys.argv[1:4]
base = json.load(open(cfg_path))
H, I, L = base["hidden_size"], base["intermediate_size"], base["num_hidden_layers"]
NH, NKV, V = base["num_attention_heads"], base["num_key_value_heads"], base["vocab_size"]
HD = base.get("head_dim", H // NH)
os.makedirs(out, exist_ok=True)
cfg = dict(base, architectures=["Qwen3ForCausalLM"], hidden_act="silu", attention_bias=False,
           torch_dtype="bfloat16", use_cache=True, head_dim=HD)
json.dump(cfg, open(f"{out}/config.json", "w"), indent=2)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(tok, f), out)


def block(i):
    p = f"model.layers.{i}."
    return [(p + "input_layernorm.weight", (H,), 1), (p + "mlp.down_proj.weight", (H, I), 0),
            (p + "mlp.gate_proj.weight", (I, H), 0), (p + "mlp.up_proj.weight", (I, H), 0),
            (p + "post_attention_layernorm.weight", (H,), 1),
            (p + "self_attn.k_norm.weight", (HD,), 1), (p + "self_attn.k_proj.weight", (NKV * HD, H), 0),
            (p + "self_attn.o_proj.weight", (H, NH * HD), 0), (p + "self_attn.q_norm.weight", (HD,), 1),
            (p + "self_attn.q_proj.weight", (NH * HD, H), 0), (p + "self_attn.v_proj.weight", (NKV * HD, H), 0)]


a, b = L * 11 // 36, L * 24 // 36
shards = [[("model.embed_tokens.weight", (V, H), 0)] + sum([block(i) for i in range(0, a)], []),
          sum([block(i) for i in range(a, b)], []),
          sum([block(i) for i in range(b, L)], []) + [("model.norm.weight", (H,), 1)]]
if not cfg.get("tie_word_embeddings", False):
    shards[-1].append(("lm_head.weight", (V, H), 0))
rng = np.random.default_rng(1234)
weight_map, total = {}, 0
for k, tensors in enumerate(shards):
    name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for t, shape, _ in tensors:
        n = int(np.prod(shape)) * 2
        header[t] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
        weight_map[t] = name
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(f"{out}/{name}", "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for t, shape, ones in tensors:
            n = int(np.prod(shape))
            chunk = 1 << 24
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                x = np.ones(m, np.float32) if ones else rng.standard_normal(m, np.float32) * np.float32(0.02)
                f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    total += off
index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
json.dump(index, open(f"{out}/model.safetensors.index.json", "w"), indent=2)
print(f"{out}: {total} bytes of weights in {len(shards)} shards")
