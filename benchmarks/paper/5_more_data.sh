#!/usr/bin/env bash
# A check on experiment 1's regime: does more data move the best magnitude up and shrink the harm of
# strong augmentation? The smallest and largest sizes (widths 0.25 and 1.5), M in {0, 5, 14}, 2 seeds (3 did not fit the session),
# the same 30 epochs and settings as 1_sweep.sh on 4x the training images (16,000; same 2,000 for validation).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/paper/env.sh
.venv/bin/augpipe sweep --model cnn --widths 0.25,1.5 --magnitudes 0,5,14 --seeds 2 \
  --epochs 30 --train-size 16000 --val-size 2000 --batch-size 128 --lr 0.1 --workers 0 --jobs 2 \
  --out "$AUGPIPE_RUNS/sweep-16k" "$@"
