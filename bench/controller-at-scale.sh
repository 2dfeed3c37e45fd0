#!/usr/bin/env bash
# The controllers' own memory and CPU at the seed's full scale, apart from the simulator:
# `stowage sim serve --scenario seed-full` runs the simulated cluster (API server, scheduler,
# kubelets, fake cloud and its interruption queue) on the wall clock in one process, and
# `stowage run --cloud-provider simulated` runs the controllers in another, pointed at it by a
# kubeconfig. Every INTERVAL seconds the controller process's resident memory (VmRSS, VmHWM)
# and CPU time (utime + stime) are read from /proc and printed next to the simulator's latest
# sample (nodes, pods, and how late the simulator runs behind its timeline).
#
#   make bench-controller              # or: bench/controller-at-scale.sh [speed] [scenario]
#   STOWAGE=path/to/stowage bench/controller-at-scale.sh 8 seed-full
#   CTL_WRAP="heaptrack -o /tmp/ctl" bench/controller-at-scale.sh   # the controller under a profiler
#
# The last lines summarise: peak RSS, RSS at the largest cluster seen, CPU seconds and CPU
# seconds per simulated hour of the controller (and of the simulator, for scale), the
# simulator's worst lateness, the load average, and the scenario report's key lines. Linux only
# (/proc). OUT=dir keeps the logs there (default: a fresh temporary directory).
set -euo pipefail
SPEED="${1:-4}"
SCENARIO="${2:-seed-full}"
STOWAGE="${STOWAGE:-${CARGO_TARGET_DIR:-target}/release/stowage}"
PORT="${PORT:-16443}"
INTERVAL="${INTERVAL:-10}"
dir="${OUT:-$(mktemp -d)}"
mkdir -p "$dir"
rm -f "$dir/kubeconfig"
trap 'kill "${sim:-}" "${ctl:-}" 2>/dev/null || true' EXIT

echo "load before: $(uptime)"
"$STOWAGE" sim serve --scenario "$SCENARIO" --speed "$SPEED" --port "$PORT" \
    --kubeconfig "$dir/kubeconfig" >"$dir/report.txt" 2>"$dir/sim.log" &
sim=$!
for _ in $(seq 600); do [[ -s "$dir/kubeconfig" ]] && break; sleep 0.1; done
[[ -s "$dir/kubeconfig" ]] || { echo "the simulator wrote no kubeconfig; see $dir/sim.log" >&2; exit 1; }
# shellcheck disable=SC2086 # CTL_WRAP is a command line (a profiler and its options)
KUBECONFIG="$dir/kubeconfig" ${CTL_WRAP:-} "$STOWAGE" run --cluster-name sim --cloud-provider simulated \
    --leader-elect false --log-format text --log-level warn,stowage_controller::interruption=info \
    --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 2>"$dir/controller.log" &
ctl=$!
wrapper=$ctl
if [[ -n "${CTL_WRAP:-}" ]]; then
    # The wrapper starts the controller as its child: measure the child.
    for _ in $(seq 100); do
        child=$(pgrep -n -f -- "$STOWAGE run --cluster-name sim" || true)
        [[ -n "$child" && "$child" != "$wrapper" ]] && { ctl=$child; break; }
        sleep 0.1
    done
fi
tick=$(getconf CLK_TCK)
start=$(date +%s)
max_nodes=0 max_pods=0 rss_at_max=0 anon_at_max=0 hwm=0 cpu=0 sim_cpu=0 sim_hwm=0 late_max=0
# CPU seconds (utime + stime) and peak RSS (kB) of a process.
cpu_of() { awk -v t="$tick" '{printf "%.1f", ($14 + $15) / t}' "/proc/$1/stat"; }
# RssAnon is the heap (what the controllers hold); RssFile the binary's pages that were run.
echo "wall_s rss_mb anon_mb hwm_mb cpu_s sim_cpu_s | simulator"
while kill -0 "$sim" 2>/dev/null && kill -0 "$ctl" 2>/dev/null; do
    for _ in $(seq "$INTERVAL"); do
        sleep 1
        kill -0 "$sim" 2>/dev/null || break 2
    done
    [[ -r /proc/$ctl/status && -r /proc/$sim/status ]] || break
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$ctl/status")
    anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$ctl/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$ctl/status")
    cpu=$(cpu_of "$ctl")
    sim_cpu=$(cpu_of "$sim")
    sim_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$sim/status")
    last=$(grep '^t=' "$dir/sim.log" | tail -n1 || true)
    nodes=$(sed -n 's/.* nodes=\([0-9]*\).*/\1/p' <<<"$last")
    pods=$(sed -n 's/.* pods=\([0-9]*\).*/\1/p' <<<"$last")
    late=$(sed -n 's/.* late=\([0-9.]*\)s.*/\1/p' <<<"$last")
    if [[ -n "$nodes" && "$nodes" -ge "$max_nodes" ]]; then max_nodes=$nodes max_pods=$pods rss_at_max=$rss anon_at_max=$anon; fi
    if [[ -n "$late" ]]; then late_max=$(awk -v a="$late_max" -v b="$late" 'BEGIN { print (b > a) ? b : a }'); fi
    echo "$(( $(date +%s) - start )) $((rss / 1024)) $((anon / 1024)) $((hwm / 1024)) $cpu $sim_cpu | $last"
done
# The simulator prints its report and exits when the scenario's time is up; the controller's
# log is read up to then (after it, it only says that the API server went away).
ended=$(date -u +%Y-%m-%dT%H:%M:%S)
kill -0 "$ctl" 2>/dev/null || echo "the controller exited before the scenario ended; see $dir/controller.log" >&2
kill "$ctl" 2>/dev/null || true
wait "$sim" || echo "the simulator exited with status $?; see $dir/sim.log" >&2
wait "$wrapper" 2>/dev/null || true
duration_s=$(awk '/of virtual time/ {split($4, a, ":"); print a[1] * 3600 + a[2] * 60 + a[3]; exit}' "$dir/report.txt")
echo "--- $SCENARIO at speed $SPEED; simulator report in $dir/report.txt, logs in $dir"
echo "load after: $(uptime)"
echo "controller peak RSS ${hwm} kB ($((hwm / 1024)) MB); RSS at the largest cluster (${max_nodes} nodes, ${max_pods} pods) $((rss_at_max / 1024)) MB, of which heap (RssAnon) $((anon_at_max / 1024)) MB"
# Simulated hours as the scenario is written (the served run is SPEED times shorter).
awk -v c="$cpu" -v sc="$sim_cpu" -v d="${duration_s:-0}" -v s="$SPEED" 'BEGIN { h = d * s / 3600; if (h > 0) printf "controller CPU %.1f s over %.2f simulated hours (%.0f s of wall): %.1f CPU-s per simulated hour (simulator: %.1f CPU-s per simulated hour)\n", c, h, d, c / h, sc / h }'
echo "simulator peak RSS $((sim_hwm / 1024)) MB; at most ${late_max}s behind its timeline"
awk -v end="$ended" '$1 < end' "$dir/controller.log" >"$dir/controller-during.log"
echo "controller log while the scenario ran: $(grep -c ' WARN ' "$dir/controller-during.log" || true) warnings, $(grep -c ' ERROR ' "$dir/controller-during.log" || true) errors"
echo "interruption events the controller handled: $(grep -c 'interruption event handled' "$dir/controller.log" || true)"
grep -E '^(scenario|peak|spot share|pending|launches|interruptions|  warning|cloud calls|violations)' "$dir/report.txt" || true
