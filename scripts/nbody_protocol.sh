#!/usr/bin/env bash
# The N-body training-size study at the paper's protocol (1000 epochs, Adam 5e-4, batch 100,
# triangular θ per epoch, λ = 0.01, free-term init std 1e-4, validation every 5 epochs), as two
# resumable streams for a 2-core machine. Rerunning a stream resumes its unfinished runs and
# only re-tests finished ones; each run's results are written as it ends.
#   scripts/nbody_protocol.sh egnn    EGNN: sizes 100/300/1000 (3 seeds), ablations at 300, 3000
#   scripts/nbody_protocol.sh segnn   SEGNN: sizes 100/300 (3 seeds), then 1000
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--preset paper --no-progress --threads 1)
case "${1:-}" in
    egnn)
        ./dev nbody "${common[@]}" --model egnn --sweep train-size --sweep-values 100 300 1000 \
            --tag paper-egnn
        ./dev nbody "${common[@]}" --model egnn --train-size 300 --tag paper-egnn \
            --arms exact relaxed no-schedule no-lie no-penalty
        ./dev nbody "${common[@]}" --model egnn --train-size 3000 --seeds 1 --tag paper-egnn-n3000
        ;;
    segnn)
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 100 300 \
            --tag paper-segnn
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 100 300 1000 \
            --tag paper-segnn
        ;;
    *) echo "usage: $0 egnn|segnn" >&2; exit 2 ;;
esac
