"""Time the PyTorch reference of one-shot Wanda (the published algorithm's block-by-block
pass, as in tests/fixtures/hf/make_prune_reference.py) on the same shape, windows and thread
count as `arborist bench --suite prune`, for a side-by-side ratio.

    /path/to/venv/bin/python benches/wanda_torch.py --calib-windows 16 --seqlen 256
Needs torch and transformers (see tests/fixtures/hf/README.md for the versions we used).
"""
import argparse
import os
import sys
import time

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf"))
from make_prune_reference import prune_wanda_literal  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--calib-windows", type=int, default=32)
ap.add_argument("--seqlen", type=int, default=256)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
# Same shape as arborist's bench_config(): 8 blocks, hidden 256, 7.3M parameters.
cfg = transformers.Qwen3Config(vocab_size=4096, hidden_size=256, intermediate_size=768,
                               num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                               head_dim=64, tie_word_embeddings=True, max_position_embeddings=4096)
model = transformers.Qwen3ForCausalLM(cfg).eval().to(torch.float32)
model.config._attn_implementation = "eager"
n = a.calib_windows * a.seqlen
ids = torch.tensor([((i * 2654435761) >> 7) % 2**32 % 4096 for i in range(n)]).reshape(-1, a.seqlen)
calib = [ids[i:i + 1] for i in range(ids.shape[0])]
t = time.perf_counter()
prune_wanda_literal(model, calib)
print(f"torch wanda: {time.perf_counter() - t:.2f} s for {len(calib)} windows of {a.seqlen} tokens "
      f"({a.threads} threads, torch {torch.__version__})")
