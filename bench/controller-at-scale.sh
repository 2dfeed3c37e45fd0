#!/usr/bin/env bash
# The controllers' own memory and CPU at the seed's full scale, apart from the simulator:
# `stowage sim serve --scenario seed-full` runs the simulated cluster (API server, scheduler,
# kubelets, fake cloud) on the wall clock in one process, and `stowage run --cloud-provider
# simulated` runs the controllers in another, pointed at it by a kubeconfig. Every INTERVAL
# seconds the controller process's resident memory (VmRSS, VmHWM) and CPU time (utime + stime)
# are read from /proc and printed next to the simulator's latest sample (nodes, pods).
#
#   make bench-controller              # or: bench/controller-at-scale.sh [speed] [scenario]
#   STOWAGE=path/to/stowage bench/controller-at-scale.sh 8 seed-full
#
# The last lines summarise: peak RSS, RSS at the largest cluster seen, CPU seconds, and CPU
# seconds per simulated hour. Linux only (/proc).
set -euo pipefail
SPEED="${1:-4}"
SCENARIO="${2:-seed-full}"
STOWAGE="${STOWAGE:-${CARGO_TARGET_DIR:-target}/release/stowage}"
PORT="${PORT:-16443}"
INTERVAL="${INTERVAL:-10}"
dir="$(mktemp -d)"
trap 'kill "${sim:-}" "${ctl:-}" 2>/dev/null || true' EXIT

"$STOWAGE" sim serve --scenario "$SCENARIO" --speed "$SPEED" --port "$PORT" \
    --kubeconfig "$dir/kubeconfig" >"$dir/report.txt" 2>"$dir/sim.log" &
sim=$!
for _ in $(seq 100); do [[ -s "$dir/kubeconfig" ]] && break; sleep 0.1; done
KUBECONFIG="$dir/kubeconfig" "$STOWAGE" run --cluster-name sim --cloud-provider simulated \
    --leader-elect false --log-format text --log-level warn \
    --metrics-addr 127.0.0.1:0 --health-probe-addr 127.0.0.1:0 2>"$dir/controller.log" &
ctl=$!
tick=$(getconf CLK_TCK)
start=$(date +%s)
max_nodes=0 rss_at_max=0 hwm=0 cpu=0
echo "wall_s rss_mb hwm_mb cpu_s | simulator"
while kill -0 "$sim" 2>/dev/null && kill -0 "$ctl" 2>/dev/null; do
    sleep "$INTERVAL"
    [[ -r /proc/$ctl/status ]] || break
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$ctl/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$ctl/status")
    cpu=$(awk -v t="$tick" '{printf "%.1f", ($14 + $15) / t}' "/proc/$ctl/stat")
    last=$(grep '^t=' "$dir/sim.log" | tail -n1 || true)
    nodes=$(sed -n 's/.* nodes=\([0-9]*\).*/\1/p' <<<"$last")
    if [[ -n "$nodes" && "$nodes" -ge "$max_nodes" ]]; then max_nodes=$nodes rss_at_max=$rss; fi
    echo "$(( $(date +%s) - start )) $((rss / 1024)) $((hwm / 1024)) $cpu | $last"
done
wait "$sim" || true
duration_s=$(awk '/of virtual time/ {split($4, a, ":"); print a[1] * 3600 + a[2] * 60 + a[3]}' "$dir/report.txt")
echo "--- $SCENARIO at speed $SPEED; simulator report in $dir/report.txt, logs in $dir"
echo "controller peak RSS ${hwm} kB ($((hwm / 1024)) MB); RSS at the largest cluster (${max_nodes} nodes) $((rss_at_max / 1024)) MB"
# Simulated hours as the scenario is written (the served run is SPEED times shorter).
awk -v c="$cpu" -v d="${duration_s:-0}" -v s="$SPEED" 'BEGIN { h = d * s / 3600; if (h > 0) printf "controller CPU %.1f s over %.2f simulated hours (%.0f s of wall): %.1f CPU-s per simulated hour\n", c, h, d, c / h }'
grep -E '^(peak|spot share|pending ->|solver|cloud calls|launches)' "$dir/report.txt" || true
