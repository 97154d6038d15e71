#!/usr/bin/env bash
# One prepared GPU check, for a machine lent with a GPU (the device tool): training
# throughput of all eight variants at 224 px in mixed precision on whichever Keras
# backend the machine has (JAX or PyTorch; TensorFlow is not needed), and the host input
# pipeline with its core count. Appends the figures, the date and the machine to
# benchmarks/RESULTS.md.
#   bash benchmarks/gpu_check.sh [peak dense half-precision TFLOP/s, default 989 (H200)]
set -euo pipefail
cd "$(dirname "$0")/.."
PEAK="${1:-989}"
if python3 -c "import jax" 2>/dev/null; then BACKEND=jax; elif python3 -c "import torch" 2>/dev/null; then BACKEND=torch; else BACKEND=tensorflow; fi
OUT=$(mktemp)
{
  echo "## GPU check, $(date -u +%Y-%m-%d), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(nproc) cores, Keras backend $BACKEND"
  echo
  echo '```'
  echo "KERAS_BACKEND=$BACKEND python3 benchmarks/bench_throughput.py --dtype-policy mixed_bfloat16 --batch 128 --peak-tflops $PEAK"
  KERAS_BACKEND=$BACKEND python3 benchmarks/bench_throughput.py --dtype-policy mixed_bfloat16 --batch 128 --steps 30 --peak-tflops "$PEAK"
  echo '```'
  echo
  echo '```'
  echo "python3 benchmarks/bench_augment.py --images 1024  (host pipeline, $(nproc) cores)"
  python3 benchmarks/bench_augment.py --images 1024 || echo "(the input-pipeline benchmark needs TensorFlow, absent here)"
  echo '```'
  echo
} | tee "$OUT"
cat "$OUT" >> benchmarks/RESULTS.md
