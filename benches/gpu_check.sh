#!/usr/bin/env bash
# The GPU check (issue 7) as one short run on a machine with an NVIDIA GPU: the tests with
# a device path, perplexity and throughput of a 4B-shaped Qwen3 in bf16 against a bf16 GEMM
# timed in the same run, and three session iterations replayed and verified on the GPU.
#
# The lent GPU machines have CUDA but no Rust, so build on a machine with CUDA's toolkit
# (nvcc) first, then carry the two stripped binaries in gpu/ (ignored by git):
#   CUDA_COMPUTE_CAP=80 cargo build --release --features cuda --target-dir target/cuda
#   CUDA_COMPUTE_CAP=80 cargo test --release --features cuda --target-dir target/cuda \
#       --test device_paths --no-run
#   benches/gpu_check.sh pack       # gpu/arborist.gz, gpu/device_paths.gz
# and there, from the repository root (the device tool: carry ["gpu"]):
#   benches/gpu_check.sh run        # results under $OUT (default gpu-out/)
# Each step has its own time limit; the whole run is meant to take under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
pack)
    mkdir -p gpu
    cp target/cuda/release/arborist gpu/arborist
    test_bin=$(ls -t target/cuda/release/deps/device_paths-* | grep -v '\.d$' | head -1)
    cp "$test_bin" gpu/device_paths
    strip gpu/arborist gpu/device_paths
    # Stripped, they are about 73 and 65 MiB: over the 64 MiB a run may carry with the
    # working tree. Gzipped, about 23 and 20 MiB; `run` unpacks them.
    gzip -9f gpu/arborist gpu/device_paths
    du -sh gpu/*
    ;;
run)
    # DEVICE, CONFIG, WINDOWS and SEQLEN override the defaults (a dry run on the CPU:
    # DEVICE=cpu CONFIG= WINDOWS=2 SEQLEN=256). The limits add up to 8.5 minutes, inside
    # one device call (10) and a session's device time (15, the machine's start included).
    out=${OUT:-gpu-out}
    device=${DEVICE:-cuda:0}
    config=${CONFIG-benches/qwen3-4b.json}
    bin=gpu
    if [ -f gpu/arborist.gz ]; then
        # Unpacked outside gpu/, which then still fits the carry limit.
        bin=${TMPDIR:-/tmp}/arborist-gpu
        mkdir -p "$bin"
        for f in arborist device_paths; do
            gunzip -c "gpu/$f.gz" > "$bin/$f" && chmod +x "$bin/$f"
        done
    fi
    for f in "$bin/arborist" "$bin/device_paths"; do
        [ -x "$f" ] || { echo "gpu_check: $f is missing: build and pack it first (see the header)" >&2; exit 2; }
    done
    mkdir -p "$out"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
            | tee "$out/gpu.csv"
    fi
    status=0
    # 1. The tests with a device path, each against the CPU.
    ARBORIST_TEST_DEVICE=$device timeout 150 "$bin/device_paths" --ignored --test-threads 1 2>&1 \
        | tee "$out/tests.txt" || status=1
    # 2. A 4B-shaped Qwen3 (random weights) in bf16: perplexity, tokens/s and the fraction of
    #    a [batch x seqlen, 2560] x [2560, 9728] bf16 GEMM timed in the same run.
    timeout 150 "$bin/arborist" bench --suite ppl ${config:+--config "$config"} --device "$device" \
        --dtype bf16 --calib-windows "${WINDOWS:-8}" --seqlen "${SEQLEN:-2048}" --batch 4 \
        --iters 2 --json | tee "$out/ppl-4b.json" || status=1
    # 3. Three session iterations on the GPU, then re-executed there by replay --verify.
    timeout 120 "$bin/arborist" run --model bundled --device "$device" --dtype bf16 --headless \
        --auto-approve --max-iters 3 --session "$out/session.yaml" > "$out/session.txt" 2>&1 \
        || status=1
    # replay re-executes on the device recorded in the session header.
    timeout 90 "$bin/arborist" replay "$out/session.yaml" --verify --headless \
        >> "$out/session.txt" 2>&1 || status=1
    tail -5 "$out/session.txt"
    exit $status
    ;;
*)
    echo "usage: benches/gpu_check.sh pack|run (see the header)" >&2
    exit 2
    ;;
esac
