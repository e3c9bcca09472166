#!/usr/bin/env bash
# Stop a cluster started by .ci/slurm/start.sh: cancel its jobs, then end exactly the daemons whose PIDs
# start.sh recorded in STATE_DIR/pids (TERM, then KILL after 10 s), and remove STATE_DIR
# (kept when PAIBENCH_SLURM_KEEP=1, e.g. to read its logs).
set -uo pipefail
state=${1:?usage: stop.sh STATE_DIR}
[ -d "$state" ] || { echo "slurm-stop: no such state dir $state" >&2; exit 0; }
export SLURM_CONF="$state/etc/slurm.conf"

if [ -f "$state/pids" ]; then
  # Cancel jobs while slurmctld is still up so slurmstepd ends its job steps itself.
  if command -v scancel >/dev/null && [ -f "$SLURM_CONF" ]; then
    timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 20); do
      [ -z "$(timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  # Reverse start order: slurmd, slurmctld, munged.
  pids=$(tac "$state/pids" | awk '{print $2}')
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
  rm -f "$state/pids"
fi
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$state/etc/slurm.conf" ]; then
  rm -f /etc/slurm/slurm.conf
fi
if [ "${PAIBENCH_SLURM_KEEP:-0}" != 1 ]; then
  rm -rf "$state"
fi
echo "slurm-stop: stopped $state" >&2
