#!/usr/bin/env bash
# Key-to-screen latency of the details overlay in a replay, as a user sees it in a real
# terminal: tmux sends a key, then the pane is polled every 5 ms until it changes.
#   benches/tui_key_latency.sh SESSION.yaml [BINARY]   (default target/release/arborist)
# Opens SESSION at iteration 1 (`g 1`), times `i` (open the details) and five keys in it.
# Needs tmux. Times include the polling (about 5 ms) and tmux's own round trip.
set -euo pipefail
session=$(realpath "$1")
bin=$(realpath "${2:-target/release/arborist}")
name=arborist-latency-$$
trap 'tmux kill-session -t "$name" 2>/dev/null || true' EXIT
tmux new-session -d -s "$name" -x 120 -y 40 "$bin replay '$session'"
sleep 3
tmux send-keys -t "$name" g 1 Enter
sleep 1
timed() {
    local before t0 now
    before=$(tmux capture-pane -p -t "$name")
    t0=$(date +%s%N)
    tmux send-keys -t "$name" "$1"
    for _ in $(seq 1 4000); do
        now=$(tmux capture-pane -p -t "$name")
        [ "$now" != "$before" ] && break
        sleep 0.005
    done
    echo "$1: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
timed i
sleep 0.5
for k in Down Down PageDown End Home; do timed "$k"; sleep 0.3; done
tmux capture-pane -p -t "$name" | head -1
