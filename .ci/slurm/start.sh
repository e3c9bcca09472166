#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster (Debian slurm-wlm 22.05 + munge) as root, without systemd,
# for the SLURM end-to-end test. One fake GPU (gres on /dev/null) makes `--gpus=1` jobs schedulable.
#
#   .ci/slurm/start.sh [STATE_DIR]      prints STATE_DIR; `source STATE_DIR/env` sets SLURM_CONF for clients
#   .ci/slurm/stop.sh  STATE_DIR        kills exactly the daemons recorded in STATE_DIR/pids
#
# Everything (config, munge key and socket, spool, logs, PIDs) lives in STATE_DIR, so nothing in /etc is
# touched and several clusters never share state. No accounting database: clients must use `squeue` for
# job status (snakemake: --slurm-status-command squeue), and MinJobAge keeps finished jobs visible to it.
# Exit status 3 means "cannot start here" (not root, no apt); callers may skip on it.
set -euo pipefail

log() { echo "slurm-start: $*" >&2; }
t0=$(date +%s.%N)

if [ "$(id -u)" -ne 0 ]; then
  log "needs root (slurmd launches jobs as their owner); not starting"
  exit 3
fi

# --- install --------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    log "slurm-wlm/munge are missing and apt-get is not available; not starting"
    exit 3
  fi
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends slurm-wlm slurm-client munge >&2
fi
t_installed=$(date +%s.%N)

# --- state directory --------------------------------------------------------------------------------------
state=${1:-$(mktemp -d /tmp/paibench-slurm.XXXXXX)}
mkdir -p "$state"
state=$(cd "$state" && pwd)
if [ -s "$state/pids" ]; then
  log "$state already has a running cluster (pids file present); stop it first"
  exit 1
fi
chmod 755 "$state"
mkdir -p "$state/etc" "$state/ctld" "$state/spool" "$state/log" "$state/munge"
host=$(hostname -s)
# Ports: free ones unless given, so a cluster started here never collides with another on the machine.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=${PAIBENCH_SLURMCTLD_PORT:-$(free_port)}
slurmd_port=${PAIBENCH_SLURMD_PORT:-$(free_port)}
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done

# Real hardware as slurmd sees it (a node that claims more than it has goes INVAL).
hw=$(slurmd -C | head -1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(( mem * 9 / 10 ))
# Without DefMemPerCPU a job that asks for no memory gets the whole node and jobs run one at a time.
def_mem=$(( mem / cpus / 2 ))

# --- munge: own key and socket, daemon runs as the munge user ------------------------------------------------
chown munge:munge "$state/munge"
chmod 755 "$state/munge"  # munged insists the socket directory is world-searchable
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$state/munge/munge.key"
chmod 400 "$state/munge/munge.key"
socket="$state/munge/munge.socket.2"

cat >"$state/etc/slurm.conf" <<EOF
ClusterName=paibench
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${socket}
StateSaveLocation=${state}/ctld
SlurmdSpoolDir=${state}/spool
SlurmctldPidFile=${state}/slurmctld.pidfile
SlurmdPidFile=${state}/slurmd.pidfile
SlurmctldLogFile=${state}/log/slurmctld.log
SlurmdLogFile=${state}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${def_mem}
GresTypes=gpu
ReturnToService=2
# Finished jobs stay visible to squeue (the status command) for 10 minutes.
MinJobAge=600
SchedulerParameters=sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# A fake GPU: without File= the node goes INVAL; AutoDetect=off so no NVML probing.
cat >"$state/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=${host} Name=gpu File=/dev/null
EOF
cat >"$state/env" <<EOF
export SLURM_CONF=${state}/etc/slurm.conf
EOF
export SLURM_CONF="$state/etc/slurm.conf"
# snakemake-executor-plugin-slurm-jobstep drops every SLURM_* variable (SLURM_CONF too) before its nested
# `srun`, so clients inside jobs need the config at the default path, as on a real cluster. Only linked
# when nothing is there; stop.sh removes the link if it still points here.
if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
  mkdir -p /etc/slurm
  ln -s "$state/etc/slurm.conf" /etc/slurm/slurm.conf
fi
: >"$state/pids"
# A failed start leaves nothing running (logs stay in $state/log).
trap 'rc=$?; if [ $rc -ne 0 ]; then PAIBENCH_SLURM_KEEP=1 "$(dirname "$0")/stop.sh" "$state"; fi' EXIT

# Each daemon runs in the foreground (-F / -D) in its own session, so \$! is the daemon's own PID.
setsid setpriv --reuid=munge --regid=munge --init-groups \
  munged -F --key-file="$state/munge/munge.key" --socket="$socket" \
  --pid-file="$state/munge/munged.pid" --seed-file="$state/munge/munge.seed" \
  --log-file="$state/munge/munged.log" </dev/null >"$state/log/munged.out" 2>&1 &
echo "munged $!" >>"$state/pids"
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { log "munged did not start:"; cat "$state/log/munged.out" "$state/munge/munged.log" >&2 || true; exit 1; }

setsid slurmctld -D -i -f "$state/etc/slurm.conf" </dev/null >"$state/log/slurmctld.out" 2>&1 &
echo "slurmctld $!" >>"$state/pids"
setsid slurmd -D -f "$state/etc/slurm.conf" -N "$host" </dev/null >"$state/log/slurmd.out" 2>&1 &
echo "slurmd $!" >>"$state/pids"

# --- wait until the node accepts jobs ---------------------------------------------------------------------
ok=
for _ in $(seq 60); do
  for daemon in slurmctld slurmd; do
    pid=$(awk -v d=$daemon '$1 == d {print $2}' "$state/pids")
    kill -0 "$pid" 2>/dev/null || { log "$daemon exited:"; tail -n 5 "$state/log/$daemon.log" >&2; exit 1; }
  done
  node_state=$(timeout 5 sinfo -h -N -n "$host" -o '%t' 2>/dev/null || true)
  case "$node_state" in idle|mix|alloc) ok=1; break ;; esac
  sleep 0.5
done
if [ -z "$ok" ]; then
  log "node did not become idle (state: ${node_state:-none}); logs in $state/log"
  tail -n 20 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
  exit 1
fi
t1=$(date +%s.%N)
log "cluster up in $(python3 -c "print(f'{$t1 - $t_installed:.1f}')") s (plus $(python3 -c "print(f'{$t_installed - $t0:.1f}')") s install); node $host: $cpus CPUs, ${mem} MB, gpu:1 (fake)"
echo "$state"
