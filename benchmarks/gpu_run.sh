#!/usr/bin/env bash
# Everything issue 8 measures, in one call on a GPU machine (a device lease is short): the GPU tests,
# the per-kernel alternatives (benchmarks/kernel_bench.py; KERNEL_BENCH=moe,... picks parts, KERNEL_BENCH= skips them), then
# benchmarks/gpu_decode.py with every part (plain graphs as baseline, the compiled block, CPU float32
# tokens, transformers, profiles, the engine). Extra arguments go to gpu_decode.py.
#   OUT=/some/dir bash benchmarks/gpu_run.sh [--skip cpu]
# A transformers wheel that knows DeepseekV4 (>= 5.23) in .whl/ is installed first where present.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/dsv4rt-gpu}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=runtime:benchmarks:tests${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -m gpu -x ${GPU_TESTS:-tests/test_gpu_decode.py tests/test_runtime_moe_gemv.py \
  tests/test_runtime_decode_attention.py tests/test_runtime_gemv.py} 2>&1 | tail -30 | tee "$out/pytest.log"
echo "[gpu_run] GPU tests done at ${SECONDS} s" | tee -a "$out/pytest.log"
[ -n "${KERNEL_BENCH-1}" ] && python3 benchmarks/kernel_bench.py --parts "${KERNEL_BENCH:-attention,hc_pre,linear,moe}" --json "$out/kernels.json" 2>&1 | tee "$out/kernels.log"
python3 benchmarks/gpu_decode.py --model /tmp/mini --make --compile --json "$out/result.json" "$@" \
  2>&1 | tee "$out/bench.log"
