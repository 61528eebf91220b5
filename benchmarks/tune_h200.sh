#!/usr/bin/env bash
# Issue 22 on one H200, in one command (a device call is at most 10 minutes):
#   OUT=/some/dir bash benchmarks/tune_h200.sh
# 1. the runtime's `mini` checkpoint (random weights, drawn on the GPU in seconds);
# 2. `dsv4ctl tune` of the included runtime's knobs for one workload (random ISL 512 / OSL 128 tokens,
#    48 prompts per point, concurrency 24,48) under one SLO (TTFT 2 s, TPOT 50 ms at p90), objective output
#    tok/s per GPU, MTP off (the runtime's MTP is being reworked); the knobs' ranges start where the
#    baseline's limits bind ($KNOBS: chunked prefill above the 512-token default, the request cap at 64-128),
#    the search stops after $TUNE_BUDGET candidates or $TUNE_SECONDS, then baseline and winner are measured
#    again side by side in the same run (2 repeats each, own server each), with a GSM8K subset if found;
# 3. `dsv4ctl propose`: the overlay, the Markdown report, the patch and the SGLang flag diff.
# Everything lands in $OUT (tune/ is the tune directory; tune/report.md and propose.md hold the numbers
# docs/tune.md quotes). GSM8K: $GSM8K, else shared/datasets/gsm8k or /work/shared/datasets/gsm8k if present.
# A CPU smoke run of the same script (tiny checkpoint, small load):
#   HW=cpu VARIANT=tiny QUANT=bf16 MINI=/tmp/tiny LOAD="-n 4 --input-len 16 --output-len 4 -c 4" \
#   TUNE_BUDGET=2 GSM8K_N=2 GSM8K_TOKENS=8 SLO=e2e=300s OUT=/tmp/t bash benchmarks/tune_h200.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/dsv4-tune}
mini=${MINI:-/tmp/mini}
mkdir -p "$out"
export PYTHONPATH=$PWD:$PWD/runtime${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DSV4CTL_RUNS=$out/runs
python3 -c "import typer, pydantic, aiohttp, rich, matplotlib, torch" \
  || { echo "[tune_h200] missing packages: pip install -e '.[runtime]' first" >&2; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
if [ ! -f "$mini/config.json" ]; then
  python3 -m dsv4ctl runtime make-checkpoint --preset mini --device cuda --out "$mini" 2>&1 | tail -2
fi
gate=()
for g in "${GSM8K:-}" shared/datasets/gsm8k /work/shared/datasets/gsm8k; do
  if [ -n "$g" ] && [ -f "$g/test.jsonl" ]; then gate=(--gsm8k "$g" --gsm8k-n "${GSM8K_N:-32}" --gsm8k-shots 2 --gsm8k-max-tokens "${GSM8K_TOKENS:-256}"); break; fi
done
resume=()
[ -f "$out/tune/tune.json" ] && resume=(--resume)  # the same command again continues a cut-short tune
echo "[tune_h200] accuracy gate: ${gate[*]:-(no GSM8K data found: not run)} at ${SECONDS}s"
# shellcheck disable=SC2086 # LOAD is a list of options
python3 -m dsv4ctl tune --hw "${HW:-h200}" --variant "${VARIANT:-mini}" --recipe "${RECIPE:-balanced}" \
  --quant "${QUANT:-fp4}" ${TOGGLES:---no-mtp} --set "model_path=$mini" --engine builtin \
  --knobs "${KNOBS:-max_running_requests=64:128,chunked_prefill_size=2048:8192}" \
  --workload random ${LOAD:--n 48 --input-len 512 --output-len 128 -c 24,48} \
  --slo "${SLO:-ttft=2s,tpot=50ms}" --slo-percentile 90 --objective throughput \
  --budget "${TUNE_BUDGET:-2}" --time-budget "${TUNE_SECONDS:-150}" --repeats 2 "${gate[@]}" "${resume[@]}" \
  --engine-timeout 240 --no-live --out "$out/tune" 2>&1 | tee "$out/tune.log"
echo "[tune_h200] tune done at ${SECONDS}s"
python3 -m dsv4ctl propose "$out/tune" --out-dir "$out/tuned" > "$out/propose.md" 2> "$out/propose.log"
echo "[tune_h200] propose exit $? at ${SECONDS}s"
cat "$out/propose.md" "$out/propose.log"
cp -r "$out/tune/report.md" "$out/tune/final/final.json" "$out/tune/pareto.png" "$out/" 2>/dev/null
ls "$out/tuned" 2>/dev/null && python3 -m dsv4ctl validate "$out"/tuned/*.yaml
