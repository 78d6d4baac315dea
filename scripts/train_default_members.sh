#!/usr/bin/env bash
# Trains the bundled model's members (configs/default.yaml, seeds 0 1 2 by default) one after the other, in the
# background-friendly way: each run resumes from its newest last.ckpt when one exists, so a killed run continues
# where it stopped when this script is started again.
#   nohup scripts/train_default_members.sh [RUNS_DIR] [SEED ...] > members.log 2>&1 &
# then: scripts/bundle_model.py build RUNS_DIR/default_s{0,1,2}/lightning_logs/version_*/model ... (see its docstring)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}; shift || true
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for s in "${seeds[@]}"; do
  dir="$runs/default_s$s"
  if ls "$dir"/lightning_logs/version_*/model/config.json >/dev/null 2>&1; then echo "seed $s: done ($dir)"; continue; fi
  ckpt=$(ls -t "$dir"/lightning_logs/version_*/checkpoints/last.ckpt 2>/dev/null | head -1 || true)
  split=$(ls "$dir"/lightning_logs/version_*/split.json 2>/dev/null | head -1 || true)
  args=(--config configs/default.yaml --seed_everything "$s" --trainer.default_root_dir "$dir" --trainer.enable_progress_bar false)
  [ -n "$split" ] && args+=(--data.split_file "$split")
  [ -n "$ckpt" ] && { echo "seed $s: resuming from $ckpt"; args+=(--ckpt_path "$ckpt"); }
  .venv/bin/faceage fit "${args[@]}"
done
