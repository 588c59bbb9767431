#!/usr/bin/env bash
# A single-node SLURM on this machine (localhost), for tests/run/test_slurm.py and trying the array.
#   bash scripts/slurm/local-cluster.sh start   # munged + slurmctld + slurmd; prints SLURM_CONF
#   bash scripts/slurm/local-cluster.sh stop
#   export SLURM_CONF=/tmp/llm-energy-slurm/slurm.conf   # then sinfo, sbatch, squeue work
# Needs root and the distribution's packages: apt-get install -y slurm-wlm munge.
# Everything it writes lives under $LLM_ENERGY_SLURM_DIR (default /tmp/llm-energy-slurm).
set -euo pipefail

DIR=${LLM_ENERGY_SLURM_DIR:-/tmp/llm-energy-slurm}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)

die() { echo "local-cluster: $*" >&2; exit 1; }

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [ -s /etc/munge/munge.key ] || {
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  }
  chown root:root /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  munged --force || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 20); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.25
  done
  die "munge credentials do not round-trip (munge -n | unmunge)"
}

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool"
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat >"$CONF" <<EOF
ClusterName=llm-energy-local
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  : >"$DIR/cgroup.conf"  # present and empty: no cgroup plugin is used
}

start() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null ||
    die "slurmctld/slurmd not found: apt-get install -y slurm-wlm munge"
  [ "$(id -u)" = 0 ] || die "run as root (slurmd starts job steps as their user)"
  start_munge
  stop quiet
  write_conf
  export SLURM_CONF=$CONF
  slurmctld -f "$CONF" || die "slurmctld did not start (see $DIR/slurmctld.log)"
  slurmd -f "$CONF" || die "slurmd did not start (see $DIR/slurmd.log)"
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "local SLURM up: export SLURM_CONF=$CONF"
      return
    fi
    sleep 0.5
  done
  die "the node never became idle: $(sinfo -h -o '%t %E' 2>&1 | head -1) (see $DIR/*.log)"
}

stop() {
  local pidfile
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  sleep 0.5
  [ "${1:-}" = quiet ] || echo "local SLURM stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
