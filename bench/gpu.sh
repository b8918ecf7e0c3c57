#!/usr/bin/env bash
# Everything vaelab checks on a GPU, in one command that fits in 10 minutes on one H100:
#   1. the tests that exercise CUDA (every tests/ file that mentions it: tests/training/test_speed.py and
#      tests/training/test_batched.py's CUDA-graph equality of batched and lone runs today), failing if any
#      of them is skipped for want of a GPU;
#   2. bench/quality.py's short form on the GPU (mlp and conv, seed 0, 2 and 10 epochs);
#   3. bench/sweep.py's short form: 1, 2, 4, 8 and 16 runs batched against one alone and one after
#      another, mlp and conv at batch 128, 1 epoch (the GPU goals: 16 mlp runs in <= 2x one run's
#      wall time, 16 conv runs in <= 3x; read the "batched / alone" column);
#   4. bench/speed.py: plain, eager, graph, compile, graph:bf16 and eager:fp16 (the T4's mode)
#      at batch 128 and 1024 for mlp and conv,
#      given the time that is left (its rows are written as they finish).
# Needs only PyTorch (with CUDA), NumPy, matplotlib, scikit-learn, safetensors, tqdm and pytest;
# runs from the source tree with PYTHONPATH=. and reaches no network. Steps 2 and 3 use
# Fashion-MNIST where the machine has it (Debian's package, or its four .gz files in
# $VAELAB_DATA/fashion-mnist/), else the bundled 5,000-digit mnist-sample, and say which.
#
#   bash bench/gpu.sh [RESULTS_DIR]      (default bench/gpu-results/)
#
# RESULTS_DIR gets machine.txt, one NAME.txt per step with its whole output, and summary.txt
# with each step's exit status and seconds. Exits 0 when every step passed, 1 when one failed,
# 2 (running nothing) when PyTorch sees no CUDA GPU.
set -u
cd "$(dirname "$0")/.."
out=${1:-bench/gpu-results}
budget=570  # seconds for the whole script; each step gets a share, speed.py what is left
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}

if ! python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    echo "bench/gpu.sh: PyTorch sees no CUDA GPU on this machine ($(python3 -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1)); nothing was run. Run it on a machine with an NVIDIA GPU and a CUDA build of PyTorch." >&2
    exit 2
fi

mkdir -p "$out"
: >"$out/summary.txt"
failed=0
step() {  # step NAME SECONDS COMMAND...: output to $out/NAME.txt, a line to summary.txt
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name (at most $limit s): $*" | tee -a "$out/summary.txt"
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && echo "(stopped after $limit s)" >>"$out/$name.txt"
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || failed=1
}

{
    date -u +"%Y-%m-%d %H:%M UTC"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    python3 -c 'import platform, torch, numpy; print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), numpy {numpy.__version__}"); print("gpu:", torch.cuda.get_device_name(0))'
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "(no nvidia-smi)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
} >"$out/machine.txt" 2>&1

if python3 -c "from vaelab.data import load_dataset; load_dataset('fashion-mnist', download=False)" >/dev/null 2>&1; then
    data=fashion-mnist
else
    data=mnist-sample
    echo "data: Fashion-MNIST is not on this machine (see the top of bench/gpu.sh); using mnist-sample" | tee -a "$out/summary.txt"
fi
echo "data: $data" >>"$out/machine.txt"

cuda_tests=$(grep -rl -i --include="test_*.py" cuda tests | tr '\n' ' ')
step cuda-tests 200 python3 -m pytest -q -rs $cuda_tests
if grep -q "SKIPPED.*CUDA" "$out/cuda-tests.txt"; then
    echo "cuda-tests: some CUDA tests were skipped on a machine with a GPU (see cuda-tests.txt)" | tee -a "$out/summary.txt"
    failed=1
fi

step quality 160 python3 bench/quality.py --models mlp,conv --datasets "$data" --epochs 2,10 --seeds 0 \
    --device cuda --threads 0

step sweep 120 python3 bench/sweep.py --dataset "$data" --images 0 --test-images 0 --models mlp,conv \
    --batches 128 --runs 1,2,4,8,16 --epochs 1 --sequential-up-to 2 --device cuda

left=$((budget - SECONDS))
if [ "$left" -gt 30 ]; then
    step speed "$left" python3 bench/speed.py --dataset "$data" --models mlp,conv --batches 128,1024 \
        --modes plain,eager,graph,compile,graph:bf16,eager:fp16 --epochs 3 --device cuda
else
    echo "speed: not run, $left s left of $budget" | tee -a "$out/summary.txt"
    failed=1
fi

echo "results in $out/ ($SECONDS s in all)"
exit "$failed"
