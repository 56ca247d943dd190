#!/usr/bin/env bash
# Experiment 1 (finding A): test accuracy against magnitude, per model size.
# SmallCNN widths 0.25 / 0.5 / 1 / 1.5 (2,294 / 8,610 / 33,338 / 74,194 parameters: 32x),
# RandAugment(2, M) for M in {0, 2, 5, 9, 14, 20, 30}, 3 seeds, 30 epochs on a seeded 4,000-image
# subset of Fashion-MNIST's training split (2,000 more held out for validation), SGD lr 0.1, batch 128.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/paper/env.sh
.venv/bin/augpipe sweep --model cnn --widths 0.25,0.5,1,1.5 --magnitudes 0,2,5,9,14,20,30 --seeds 3 \
  --epochs 30 --train-size 4000 --val-size 2000 --batch-size 128 --lr 0.1 --workers 0 --jobs 2 \
  --out "$AUGPIPE_RUNS/sweep" "$@"
