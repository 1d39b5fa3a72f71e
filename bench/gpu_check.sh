#!/usr/bin/env bash
# GPU check (issues 21, 32): on one GPU machine with vLLM installed and no internet, runs the first steps of
# the 3B recipe (manifests/train-visionthink-3b.yaml) with vLLM colocated in sleep mode, and prints the
# measured GPU memory and step time beside `vt train --dry-run`'s estimate for the same flags.
#
#   bash bench/gpu_check.sh [WORKDIR]                 # default /tmp/vt-gpu-check; each stage's log in WORKDIR/*.log
#   DRY=1 GPU_GB=80 bash bench/gpu_check.sh [WORKDIR] # anywhere (CPU): the estimates and the commands, no training
#
# Env: STAGES="3b" (add "mini" for the mini warm start + `vt eval` through a local vLLM server, issue 21's path)
#      MODEL_3B   a checkpoint dir or hub id in the HF cache (default Qwen/Qwen2.5-VL-3B-Instruct; offline:
#                 copy it in first, e.g. `huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct`)
#      STEPS=2    optimiser steps;  ACCUM=16 micro-batches of 1 per step (the recipe: 64 on 8 GPUs; memory does
#                 not depend on it, the step time grows with it: the script prints the time per micro-batch);
#      GEN_BATCH=32 completions per rollout round (2 prompts x 16);  REFILL=1 refill rounds (recipe 16)
#      MODEL      the mini stage's checkpoint instead of building it (`vt init-model mini`, ~10 min on CPU)
#      PORT=8011  the mini stage's vLLM server;  GPU_GB  GPU memory in GB (default: nvidia-smi's)
# The 3B recipe's judge (openai:gpt-4o) needs the internet: the check uses the rule judge (`--judge auto`) on
# the miniature data (`vt build-data manifests/miniature.yaml`, built offline). When the dry-run says the full
# fine-tune cannot fit the GPU (one 80 GB GPU: ~103-118 GiB for the recipe's optimizer, reference model and
# vLLM's 40 %), the check trains a LoRA adapter (`--use_peft true`) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/vt-gpu-check}
mkdir -p "$W" && W=$(cd "$W" && pwd)
STAGES=${STAGES:-3b}
STEPS=${STEPS:-2}
ACCUM=${ACCUM:-16}
GEN_BATCH=${GEN_BATCH:-32}
REFILL=${REFILL:-1}
PORT=${PORT:-8011}
MODEL_3B=${MODEL_3B:-Qwen/Qwen2.5-VL-3B-Instruct}
DRY=${DRY:-0}
if [ -z "${VT:-}" ]; then if [ -x .venv/bin/vt ]; then VT=.venv/bin/vt; else VT=vt; fi; fi
if [ -z "${PY:-}" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi; fi
export HF_HUB_OFFLINE=1 TRL_EXPERIMENTAL_SILENCE=1

say() { echo "== $*"; }
run_or_show() {  # run a command, or print it in DRY mode
  if [ "$DRY" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

if [ "$DRY" = 1 ]; then
  GPU_GB=${GPU_GB:-80}
  say "DRY=1: estimates and commands only, for 1 GPU of ${GPU_GB} GB"
else
  command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs a GPU machine (DRY=1 to dry-run)" >&2; exit 2; }
  $PY -c "import vllm" 2>/dev/null || { echo "gpu_check: vllm is not installed (pip install -e '.[vllm]')" >&2; exit 2; }
  # memory.total is in MiB; --gpu_memory_gb is in GB (10^9 bytes)
  GPU_GB=${GPU_GB:-$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{printf "%.0f", $1*1.048576/1000}')}
  say "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1) (--gpu_memory_gb $GPU_GB)"
fi

peak_mib() {  # sample the GPU's used memory every 0.5 s into $1 until killed
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$1" 2>/dev/null
}
peak_of() { sort -n "$1" | tail -1; }
estimate() {  # the dry-run's estimate for a train command line ("$@"): prints it, saves it to $EST
  $VT train "$@" --gpus 1 --gpu_memory_gb "$GPU_GB" --dry-run > "$EST" 2>&1
}
steps_report() {  # per-step lines of a run's metrics.jsonl ($1) and the mean step time after the first
  $PY - "$1" "$2" <<'EOF'
import json, sys
rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
accum = int(sys.argv[2])
steps = [r for r in rows if r.get("step_time") is not None]
for r in steps:
    print(f"   step {r.get('step')}: step_time {r['step_time']:.2f} s ({r['step_time'] / accum:.2f} s a micro-batch), "
          f"reward {r.get('reward') or float('nan'):.3f}, resize_ratio {r.get('resize_ratio') or float('nan'):.2f}")
if len(steps) > 1:
    t = [r["step_time"] for r in steps[1:]]
    print(f"   mean step time after the first: {sum(t) / len(t):.2f} s ({sum(t) / len(t) / accum:.2f} s a micro-batch)")
EOF
}

t0=$(date +%s)
if [ -d "$W/data" ]; then :
elif [ "$DRY" = 1 ]; then echo "would run: $VT build-data manifests/miniature.yaml --out $W/data"
else $VT build-data manifests/miniature.yaml --out "$W/data" > "$W/build.log" 2>&1
  say "miniature data ready in $(( $(date +%s) - t0 )) s ($W/data)"
fi

# --- the 3B recipe's first steps ------------------------------------------------------------------------
if [[ " $STAGES " == *" 3b "* ]]; then
  RECIPE=manifests/train-visionthink-3b.yaml
  FLAGS_3B=(--model "$MODEL_3B" --data_dir "$W/data" --output_dir "$W/train-3b" --max_steps "$STEPS"
    --judge auto --judge_input vt --judge_scope open --max_refill_rounds "$REFILL"
    --generation_batch_size "$GEN_BATCH" --gradient_accumulation_steps "$ACCUM"
    --save_strategy no --report_to none --logging_steps 1)
  EST=$W/dryrun-3b.log
  say "vt train $RECIPE --dry-run (1 GPU of $GPU_GB GB)"
  if ! estimate "$RECIPE" "${FLAGS_3B[@]}"; then
    grep -E "cannot fit|error" "$EST" || tail -3 "$EST"
    grep -q "cannot fit" "$EST" || exit 1
    say "the full fine-tune cannot fit one GPU: a LoRA adapter instead (--use_peft true)"
    FLAGS_3B+=(--use_peft true)
    estimate "$RECIPE" "${FLAGS_3B[@]}" || { cat "$EST"; exit 1; }
  fi
  grep -E "^(model|launch|batch|lengths)|phase|peak|fits" "$EST"
  if [ "$DRY" = 1 ]; then
    echo "would run: $VT train $RECIPE ${FLAGS_3B[*]}"
  else
    if [ ! -d "$MODEL_3B" ] && ! $PY -c "import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1], local_files_only=True)" "$MODEL_3B" 2>/dev/null; then
      echo "gpu_check: no weights for $MODEL_3B here (offline): copy them into the HF cache or set MODEL_3B=DIR" >&2
      exit 2
    fi
    rm -rf "$W/train-3b"
    peak_mib "$W/train-3b.mem" & MON=$!
    t0=$(date +%s)
    $VT train "$RECIPE" "${FLAGS_3B[@]}" > "$W/train-3b.log" 2>&1 || { kill $MON; tail -20 "$W/train-3b.log"; exit 1; }
    kill $MON
    say "3B recipe: $STEPS steps in $(( $(date +%s) - t0 )) s (model load and vLLM start included)"
    say "peak GPU memory measured $(peak_of "$W/train-3b.mem") MiB = $(awk '{printf "%.1f", $1/1024}' <<< "$(peak_of "$W/train-3b.mem")") GiB;" \
        "estimated: $(grep -E '^ *peak' "$EST" | sed 's/^ *//')"
    steps_report "$W/train-3b/metrics.jsonl" "$ACCUM"
  fi
fi

# --- the mini path: mini warm start, vt train with vLLM colocated, vt eval through a vLLM server ----------
if [[ " $STAGES " == *" mini "* ]]; then
  if [ -z "${MODEL:-}" ]; then
    if [ "$DRY" = 1 ]; then  # the estimate needs a config only: the tiny model's (seconds to build)
      [ -d "$W/model-tiny" ] || $VT init-model tiny "$W/model-tiny" > "$W/init.log" 2>&1
      echo "would run: $VT init-model mini $W/model"
      MODEL=$W/model-tiny
    else
      [ -d "$W/model" ] || $VT init-model mini "$W/model" > "$W/init.log" 2>&1
      MODEL=$W/model
    fi
  fi
  TRAIN_FLAGS=(--model "$MODEL" --data_dir "$W/data" --output_dir "$W/train" --max_steps "$STEPS"
    --use_cpu false --bf16 true --torch_threads 4 --use_vllm true --vllm_mode colocate
    --vllm_enable_sleep_mode true --vllm_gpu_memory_utilization 0.3 --vllm_max_model_length 2048
    --vllm_importance_sampling_correction false --save_strategy no --report_to none)
  EST=$W/dryrun-mini.log
  say "vt train manifests/train-mini.yaml --dry-run (1 GPU of $GPU_GB GB)"
  estimate manifests/train-mini.yaml "${TRAIN_FLAGS[@]}" || { cat "$EST"; exit 1; }
  grep -E "phase|peak|fits" "$EST"
  EVAL=($VT eval --policy openai:policy --policy-base-url "http://127.0.0.1:$PORT/v1" --data "$W/data" --mode think
    --limit 64 --max-new-tokens 32 --db "$W/eval.duckdb" --out "$W/eval" --name gpu-check)
  SERVE=($PY -m vllm.entrypoints.openai.api_server --model "$W/train/final" --served-model-name policy --port "$PORT"
    --max-model-len 2048 --gpu-memory-utilization 0.5)
  if [ "$DRY" = 1 ]; then
    echo "would run: $VT train manifests/train-mini.yaml ${TRAIN_FLAGS[*]}"
    echo "would run: ${SERVE[*]}"
    echo "would run: ${EVAL[*]}"
  else
    rm -rf "$W/train"
    peak_mib "$W/train.mem" & MON=$!
    t0=$(date +%s)
    $VT train manifests/train-mini.yaml "${TRAIN_FLAGS[@]}" > "$W/train.log" 2>&1 || { kill $MON; tail -20 "$W/train.log"; exit 1; }
    kill $MON
    say "mini: $STEPS steps in $(( $(date +%s) - t0 )) s; peak GPU memory $(peak_of "$W/train.mem") MiB;" \
        "estimated: $(grep -E '^ *peak' "$EST" | sed 's/^ *//')"
    steps_report "$W/train/metrics.jsonl" 1

    say "vt eval --mode think through a local vLLM server"
    peak_mib "$W/serve.mem" & MON=$!
    "${SERVE[@]}" > "$W/serve.log" 2>&1 & SRV=$!
    trap 'kill $SRV $MON 2>/dev/null || true' EXIT
    for _ in $(seq 1 180); do
      curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
      kill -0 $SRV 2>/dev/null || { tail -20 "$W/serve.log"; exit 1; }
      sleep 1
    done
    t0=$(date +%s)
    "${EVAL[@]}" > "$W/eval.log" 2>&1 || { tail -20 "$W/eval.log"; exit 1; }
    say "vt eval: 64 samples in $(( $(date +%s) - t0 )) s; peak GPU memory (server) $(peak_of "$W/serve.mem") MiB"
    tail -5 "$W/eval.log"
  fi
fi
say "done ($W)"
