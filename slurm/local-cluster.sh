#!/usr/bin/env bash
# A private one-node Slurm cluster on this machine, for tests and for rehearsing a submission.
#
#   slurm/local-cluster.sh start [DIR]    munged + slurmctld + slurmd, state and logs in DIR
#   slurm/local-cluster.sh stop  [DIR]    stop them (only the daemons this script started, by pid file)
#   slurm/local-cluster.sh status [DIR]   sinfo of the cluster, or why it is not up
#   slurm/local-cluster.sh env   [DIR]    the line to paste so sbatch/squeue/lt matrix submit talk to it
#
# DIR defaults to $LT_SLURM_DIR or /tmp/lt-slurm-<uid>. Needs Debian's slurmctld, slurmd, slurm-client and
# munge packages (slurm/system-deps.sh installs them) and no systemd: processes are tracked by
# proctrack/linuxproc, tasks are not bound (task/none), and munge runs on a private socket with a key made
# here, so nothing in /etc is touched. Clients find the cluster through SLURM_CONF=DIR/slurm.conf.
# Ports: LT_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
set -euo pipefail

ACTION=${1:-status}
DIR=$(realpath -m "${2:-${LT_SLURM_DIR:-/tmp/lt-slurm-$(id -u)}}")
PORT=${LT_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "local-cluster: $*" >&2; exit 1; }

need_tools() {
  local missing=()
  for tool in munged slurmctld slurmd sinfo scontrol; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: install Debian's slurmctld slurmd slurm-client munge \
(as root: bash slurm/system-deps.sh)"
}

# The node line: what slurmd itself detects (cores, sockets, memory), so the node never drains for
# "low socket*core*thread count"; falls back to nproc and /proc/meminfo.
node_line() {
  local detected
  detected=$(PATH=$PATH:/usr/sbin slurmd -C 2>/dev/null | head -1 || true)
  if [[ $detected == NodeName=* ]]; then
    echo "NodeName=$NODE NodeAddr=127.0.0.1 ${detected#NodeName=* }"
  else
    local mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
    echo "NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb"
  fi
}

write_config() {
  local user
  user=$(id -un)
  mkdir -p "$DIR"/{state,spool,log,munge}
  cat >"$CONF" <<CONF
# Written by slurm/local-cluster.sh: a one-node cluster without systemd or cgroups.
ClusterName=lt-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
# Cores are handed out one CPU at a time, so a 2-core machine runs two single-CPU cells at once.
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# Short waits so tests see a requeue or a cancel take effect in seconds, not minutes.
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=2
MaxArraySize=10001
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
$(node_line)
CONF
}

start_munge() {
  local key=$DIR/munge/munge.key
  if [ ! -s "$key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
    chmod 0400 "$key"
  fi
  chmod 0700 "$DIR/munge"
  # --force: munged refuses to run as root or with a key outside /etc/munge otherwise.
  PATH=$PATH:/usr/sbin munged --force --socket="$DIR/munge/munge.socket" --key-file="$key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_until_idle() {
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then return 0; fi
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
  die "the node did not come up within 30 s (logs above, all in $DIR/log)"
}

start() {
  need_tools
  export PATH=$PATH:/usr/sbin
  running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid" && { wait_until_idle; echo "already running ($CONF)"; return; }
  NODE=$(hostname -s)
  write_config
  running "$DIR/munge/munged.pid" || start_munge || die "munged did not start (see $DIR/munge/munged.log)"
  # -c: start clean, without the jobs of an earlier start.
  slurmctld -f "$CONF" -c || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
  slurmd -f "$CONF" -c -N "$NODE" || die "slurmd did not start (see $DIR/log/slurmd.log)"
  wait_until_idle
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  echo "local Slurm cluster up: $(sinfo -h -o '%N %c CPUs %m MB %t') — export SLURM_CONF=$CONF"
}

stop_pid() {
  local file=$1
  if running "$file"; then
    local pid
    pid=$(cat "$file")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$file"
}

stop() {
  # Jobs first: their slurmstepd processes would outlive the daemons otherwise.
  if running "$DIR/slurmctld.pid"; then
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 30); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  echo "local Slurm cluster stopped ($DIR)"
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  status) [ -f "$CONF" ] && sinfo || die "not started (no $CONF)" ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 start|stop|status|env [DIR]" ;;
esac
