#!/usr/bin/env bash
# The GPU check (issue 7) as one short run on a machine with an NVIDIA GPU: the tests with
# a device path, perplexity and throughput of a 4B-shaped Qwen3 in bf16 against a bf16 GEMM
# timed in the same run, three session iterations replayed and verified on the GPU, the
# 4B shape's profile (by part), forward and one-shot Wanda, and the session bench.
#
# The lent GPU machines have CUDA 13.0 (driver 580) but no Rust, so build here against the
# same CUDA version first, then carry the two stripped binaries in gpu/ (ignored by git):
#   benches/gpu_check.sh toolkit    # CUDA 13.0's compiler and libraries from PyPI, in /opt/cu13
#   benches/gpu_check.sh build      # target/cuda (19 minutes clean on 2 cores)
#   benches/gpu_check.sh pack       # gpu/arborist.gz, gpu/device_paths.gz
# and there, from the repository root (the device tool: carry ["gpu"]):
#   benches/gpu_check.sh run        # results under $OUT (default gpu-out/)
# Each step has its own time limit; check.txt logs each one's exit status and wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

cu=${CUDA_HOME_DIR:-/opt/cu13}
case "${1:-}" in
toolkit)
    # NVIDIA's wheels hold nvcc, its headers and the libraries candle links. The driver
    # library is the GPU machine's own: linking needs only its symbols, so a stub with every
    # function cudarc declares stands in for it (the binary names it by soname, libcuda.so.1).
    mkdir -p "$cu/wheels" "$cu/stub"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$cu/wheels" \
        'nvidia-cuda-nvcc==13.0.*' 'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-crt==13.0.*' \
        'nvidia-cuda-cccl==13.0.*' 'nvidia-nvvm==13.0.*' 'nvidia-cuda-nvrtc==13.0.*' \
        'nvidia-cublas==13.0.*' 'nvidia-curand<10.5'
    for w in "$cu"/wheels/*.whl; do unzip -qo "$w" -d "$cu"; done
    lib=$cu/nvidia/cu13/lib
    for l in cublas cublasLt nvrtc cudart; do ln -sf "lib$l.so.13" "$lib/lib$l.so"; done
    ln -sf libcurand.so.10 "$lib/libcurand.so"
    sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
    grep -oE '^\s+(pub )?fn cu[A-Za-z0-9_]+' "$sys" | awk '{print "void " $NF "(void){}"}' \
        | sort -u > "$cu/stub/libcuda.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cu/stub/libcuda.so" "$cu/stub/libcuda.c"
    "$cu/nvidia/cu13/bin/nvcc" --version | tail -2
    ;;
build)
    # sm_90 (Hopper) PTX, which the driver compiles on loading.
    export PATH=$cu/nvidia/cu13/bin:$PATH CUDA_ROOT=$cu/nvidia/cu13 CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    export RUSTFLAGS="-L native=$cu/stub"
    cargo build --release --locked --features cuda --target-dir target/cuda
    cargo test --release --locked --features cuda --target-dir target/cuda --test device_paths --no-run
    ;;
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
    # DEVICE, CONFIG, WINDOWS and SEQLEN override the defaults (a dry run on the CPU, with
    # LD_LIBRARY_PATH=/opt/cu13/nvidia/cu13/lib:/opt/cu13/stub where no driver is:
    # DEVICE=cpu CONFIG= WINDOWS=2 SEQLEN=256 PROFILE_WINDOWS=2 SESSION_CONFIG=
    # SESSION_ITERS=2). The limits add up to 9.25 minutes; on the H200 the whole run took
    # 63 to 187 s (2026-12-04). Step 0 stops the run within a minute where the binary
    # cannot run.
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
    export RUST_BACKTRACE=1
    if [ "$device" != cpu ]; then
        # The binary links CUDA 13's libraries by soname (libcublas.so.13, libcublasLt.so.13,
        # libcudart.so.13, libcurand.so.10); there they sit in the toolkit or in Python's
        # nvidia packages, so each one's folder goes on the search path.
        for lib in libcublasLt.so.13 libcublas.so.13 libcudart.so.13 libcurand.so.10 libnvrtc.so.13; do
            dir=$(find /usr/local /opt /usr/lib -name "$lib" -printf '%h\n' 2>/dev/null | head -1)
            [ -n "$dir" ] && LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        done
        export LD_LIBRARY_PATH
    fi
    # Text goes to check.txt, each step's JSON to its own file (a device call returns 8).
    log=$out/check.txt
    : > "$log"
    status=0
    # step N NAME LIMIT [-o FILE] CMD...: runs CMD under a time limit, its stdout to FILE or
    # the log, its stderr to the log, and logs its exit status and wall time.
    # STEPS (e.g. "0 2 6") runs only the numbered steps below; step 0 always runs.
    step() {
        local number=$1 name=$2 limit=$3 dest=$log t0 rc=0
        shift 3
        if [ -n "${STEPS:-}" ] && [ "$number" != 0 ] && [[ " $STEPS " != *" $number "* ]]; then
            return 0
        fi
        if [ "$1" = -o ]; then dest=$2; : > "$dest"; shift 2; fi
        echo "== $name" >> "$log"
        t0=$(date +%s%N)
        timeout "$limit" "$@" >> "$dest" 2>> "$log" || rc=$?
        echo "== $name: exit $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"
        [ "$rc" = 0 ] || status=1
        return "$rc"
    }
    {
        command -v nvidia-smi >/dev/null \
            && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
        ldd "$bin/arborist" | grep -E 'cuda|cublas|nvrtc|curand' || true
        ls -d /usr/local/cuda*/bin/* 2>/dev/null | grep -E 'nsys|ncu|nvcc' || true
    } >> "$log" 2>&1
    # 0. One evaluation of the bundled model on the device, to stop at once (and cheaply)
    #    where the binary cannot run there.
    step 0 "bundled model, bf16" 45 "$bin/arborist" eval --model bundled --device "$device" \
        --dtype bf16 --ppl assets/bundled/data/eval.txt --seqlen 512 \
        || { echo "gpu_check: arborist does not run on $device (see $log)" >&2; exit 1; }
    # 1. The tests with a device path, each against the CPU.
    ARBORIST_TEST_DEVICE=$device step 1 "device_paths tests" 60 "$bin/device_paths" --ignored \
        --test-threads 1 || true
    # 2. A 4B-shaped Qwen3 (random weights) in bf16: perplexity, tokens/s and the fraction of
    #    a [batch x seqlen, 2560] x [2560, 9728] bf16 GEMM timed in the same run.
    step 2 "4B-shaped perplexity" 60 -o "$out/ppl-4b.json" "$bin/arborist" bench --suite ppl \
        ${config:+--config "$config"} --device "$device" --dtype bf16 \
        --calib-windows "${WINDOWS:-8}" --seqlen "${SEQLEN:-2048}" --batch 4 --iters 2 --json \
        || true
    # 3. Three session iterations on the GPU, then re-executed there by replay --verify,
    #    which runs on the device the session header names.
    step 3 "session, 3 iterations" 60 "$bin/arborist" run --model bundled --device "$device" \
        --dtype bf16 --headless --auto-approve --max-iters 3 --session "$out/session.yaml" \
        || true
    step 3 "replay --verify" 45 "$bin/arborist" replay "$out/session.yaml" --verify --headless \
        || true
    # 4. The 4B-shaped model's profile: calibration pass, gradient pass and layer rows.
    step 4 "4B-shaped profile" 60 -o "$out/profile-4b.json" "$bin/arborist" bench --suite profile \
        ${config:+--config "$config"} --device "$device" --dtype bf16 \
        --calib-windows "${PROFILE_WINDOWS:-16}" --seqlen 512 --batch 4 --json || true
    # 5. Full against incremental iterations of the built-in session on a 99M-parameter
    #    random model, on the device (last: the steps above count for more).
    session_config=${SESSION_CONFIG-benches/qwen3-99m.json}
    step 5 "session bench" 45 -o "$out/session-bench.json" "$bin/arborist" bench \
        --suite session --model random ${session_config:+--config "$session_config"} \
        --device "$device" --dtype bf16 --session-iters "${SESSION_ITERS:-6}" --iters 1 \
        --memory-runs 0 --json || true
    # 6. Where the 4B-shaped evaluation's time goes: the forward alone (logits, no loss) at
    #    two window lengths, against the same GEMM; next to step 2, the loss's share and the
    #    attention's (which grows with the square of the window). The JSON's `phases` split
    #    one marked pass by part (norms, projections, the attention's steps, the head).
    for len in 512 2048; do
        step 6 "4B-shaped forward, seqlen $len" 45 -o "$out/forward-4b-$len.json" "$bin/arborist" \
            bench --suite forward ${config:+--config "$config"} --device "$device" \
            --dtype bf16 --seqlen "$len" --batch 4 --iters 3 --json || true
    done
    # 7. One-shot Wanda 50% of the 4B shape (calibration pass, scores, masks).
    step 7 "4B-shaped one-shot Wanda" 90 -o "$out/prune-4b.json" "$bin/arborist" bench \
        --suite prune ${config:+--config "$config"} --device "$device" --dtype bf16 \
        --calib-windows "${PROFILE_WINDOWS:-16}" --seqlen 512 --batch 4 --json || true
    grep -E '^(test result|.*verified|perplexity)' "$log" || true
    exit $status
    ;;
*)
    echo "usage: benches/gpu_check.sh toolkit|build|pack|run (see the header)" >&2
    exit 2
    ;;
esac
