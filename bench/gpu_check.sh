#!/usr/bin/env bash
# GPU check (issue 21): on one machine with a GPU, vLLM installed and no internet, runs the path a real run
# takes -- the mini warm start, `vt train` with vLLM colocated in sleep mode, `vt eval` through a local vLLM
# server -- for a few steps, and prints step time and GPU memory next to `vt train --dry-run`'s estimate.
#
#   bash bench/gpu_check.sh [WORKDIR]          # default /tmp/vt-gpu-check; STEPS=3 PORT=8011 MODEL=DIR
#
# MODEL: a checkpoint to use instead of building the mini warm start (`vt init-model mini`, ~10 min on CPU,
# cached under ~/.cache/vt). Everything is offline (HF_HUB_OFFLINE=1). Each stage's log is in WORKDIR/*.log.
set -euo pipefail
W=${1:-/tmp/vt-gpu-check}
STEPS=${STEPS:-3}
PORT=${PORT:-8011}
VT=${VT:-.venv/bin/vt}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1
mkdir -p "$W"
command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs a GPU machine" >&2; exit 2; }
$PY -c "import vllm" 2>/dev/null || { echo "gpu_check: vllm is not installed (pip install -e '.[vllm]')" >&2; exit 2; }
GPU_GB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{printf "%.0f", $1/1024*1.073741824}')
echo "== GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"

peak_mib() {  # sample the GPU's used memory every 0.5 s into $1 until killed
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" 2>/dev/null
}
peak_of() { sort -n "$1" | tail -1; }

t0=$(date +%s)
[ -d "$W/data" ] || $VT build-data manifests/miniature.yaml --out "$W/data" > "$W/build.log" 2>&1
if [ -z "${MODEL:-}" ]; then
  [ -d "$W/model" ] || $VT init-model mini "$W/model" > "$W/init.log" 2>&1
  MODEL=$W/model
fi
echo "== data + model ready in $(( $(date +%s) - t0 )) s (model $MODEL)"

TRAIN_FLAGS=(--model "$MODEL" --data_dir "$W/data" --output_dir "$W/train" --max_steps "$STEPS"
  --use_cpu false --bf16 true --torch_threads 4 --use_vllm true --vllm_mode colocate
  --vllm_enable_sleep_mode true --vllm_gpu_memory_utilization 0.3 --vllm_max_model_length 2048
  --vllm_importance_sampling_correction false --save_strategy no --report_to none)
echo "== vt train --dry-run (1 GPU of ${GPU_GB} GB)"
$VT train manifests/train-mini.yaml "${TRAIN_FLAGS[@]}" --gpus 1 --gpu_memory_gb "$GPU_GB" --dry-run | tail -4 || true

rm -rf "$W/train"
peak_mib "$W/train.mem" & MON=$!
t0=$(date +%s)
$VT train manifests/train-mini.yaml "${TRAIN_FLAGS[@]}" > "$W/train.log" 2>&1 || { kill $MON; tail -20 "$W/train.log"; exit 1; }
kill $MON
echo "== vt train: $STEPS steps in $(( $(date +%s) - t0 )) s (load and vLLM start included); peak GPU memory $(peak_of "$W/train.mem") MiB"
$PY - "$W/train/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
steps = [r for r in rows if "step_time" in r]
for r in steps:
    print(f"   step {r.get('step')}: step_time {r['step_time']:.2f} s, reward {r.get('reward', float('nan')):.3f}, "
          f"resize_ratio {r.get('resize_ratio', float('nan')):.2f}")
if len(steps) > 1:
    t = [r["step_time"] for r in steps[1:]]
    print(f"   mean step time after the first: {sum(t) / len(t):.2f} s")
EOF

echo "== vt eval --mode think through a local vLLM server"
peak_mib "$W/serve.mem" & MON=$!
$PY -m vllm.entrypoints.openai.api_server --model "$W/train/final" --served-model-name policy --port "$PORT" \
  --max-model-len 2048 --gpu-memory-utilization 0.5 > "$W/serve.log" 2>&1 & SRV=$!
trap 'kill $SRV $MON 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 $SRV 2>/dev/null || { tail -20 "$W/serve.log"; exit 1; }
  sleep 1
done
t0=$(date +%s)
$VT eval --policy openai:policy --policy-base-url "http://127.0.0.1:$PORT/v1" --data "$W/data" --mode think \
  --limit 64 --max-new-tokens 32 --db "$W/eval.duckdb" --out "$W/eval" --name gpu-check > "$W/eval.log" 2>&1 \
  || { tail -20 "$W/eval.log"; exit 1; }
echo "== vt eval: 64 samples in $(( $(date +%s) - t0 )) s; peak GPU memory (server) $(peak_of "$W/serve.mem") MiB"
tail -5 "$W/eval.log"
