#!/usr/bin/env bash
# The N-body training-size study at the paper's protocol (1000 epochs, Adam 5e-4, batch 100,
# triangular θ per epoch, λ = 0.01, free-term init std 1e-4, validation every 5 epochs), as
# resumable streams for a 2-core machine, one process each. Rerunning a stream resumes its
# unfinished runs and only re-tests finished ones; each run's results are written as it ends.
# The streams never train the same run at the same time (stream egnn takes SEGNN's last seed
# at 300 samples, which the segnn stream reaches last).
#   scripts/nbody_protocol.sh egnn    EGNN: sizes 100/300, ablations at 100, size 1000,
#                                      then SEGNN 300 seed 2, then EGNN 3000 (one seed)
#   scripts/nbody_protocol.sh segnn   SEGNN: sizes 100/300 (3 seeds), then 1000
#   scripts/nbody_protocol.sh report  redraw every table and plot from the per-run results
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--preset paper --no-progress --threads 1)
case "${1:-}" in
    egnn)
        ./dev nbody "${common[@]}" --model egnn --sweep train-size --sweep-values 100 300 \
            --tag paper-egnn
        ./dev nbody "${common[@]}" --model egnn --train-size 100 --tag paper-egnn \
            --variants exact relaxed no-schedule no-lie weak-penalty no-penalty
        ./dev nbody "${common[@]}" --model egnn --sweep train-size --sweep-values 100 300 1000 \
            --tag paper-egnn
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 300 \
            --seeds 2 --tag paper-segnn
        ./dev nbody "${common[@]}" --model egnn --train-size 3000 --seeds 0 --tag paper-egnn-n3000
        ;;
    segnn)
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 100 300 \
            --tag paper-segnn
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 100 300 1000 \
            --tag paper-segnn
        ;;
    report)
        ./dev nbody "${common[@]}" --model egnn --sweep train-size --sweep-values 100 300 1000 \
            --tag paper-egnn --report-only
        ./dev nbody "${common[@]}" --model egnn --train-size 100 --tag paper-egnn \
            --variants exact relaxed no-schedule no-lie weak-penalty no-penalty --report-only
        ./dev nbody "${common[@]}" --model segnn --sweep train-size --sweep-values 100 300 \
            --tag paper-segnn --report-only
        ./dev nbody "${common[@]}" --model egnn --train-size 3000 --seeds 0 --tag paper-egnn-n3000 \
            --report-only
        ;;
    *) echo "usage: $0 egnn|segnn|report" >&2; exit 2 ;;
esac
