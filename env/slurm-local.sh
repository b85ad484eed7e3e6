#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages: slurmctld + slurmd on localhost, job
# accounting through slurmdbd + MariaDB, one partition `cpu`, one account `sciformer`. It exists so that
# `snakemake --workflow-profile profiles/slurm-local ...` (and tests/test_slurm.py) run every rule as a real
# sbatch job, the way a cluster runs them, on a workstation or a CI machine.
#
#   sudo bash env/slurm-local.sh [start]   # install (once), configure, start; waits until the node is idle
#   sudo bash env/slurm-local.sh status    # daemons, node, partition, accounts
#   sudo bash env/slurm-local.sh stop      # stops the SLURM daemons (and munge/MariaDB if this script started them)
#
# Environment: SLURM_LOCAL_CPUS (default: all CPUs), SLURM_LOCAL_MEM_MB (default: 90% of the machine's or the
# container's memory), SLURM_LOCAL_USERS (extra users to give the account; default: $SUDO_USER),
# SLURM_LOCAL_FORCE=1 to overwrite an /etc/slurm/slurm.conf this script did not write.
# Needs root (it installs packages and writes /etc/slurm) and apt with Debian 12's packages (SLURM 22.05); run
# by another user, `start` succeeds only when the cluster is already up (and says so), else it says why not.
set -euo pipefail

MARK="# written by sciformer env/slurm-local.sh"
CLUSTER=sciformer
PARTITION=cpu
ACCOUNT=sciformer
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
STATE=/run/sciformer-slurm      # which of munge/MariaDB this script started (so `stop` leaves others' alone)
# slurmdbd is needed: snakemake-executor-plugin-slurm queries job states with `sacct` whenever the binary
# exists (it always does: it ships in slurm-client), checks `slurm_account` with `sacctmgr`, and `sacct`
# without slurmdbd answers only "accounting storage is disabled". MariaDB is slurmdbd's only backend.
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
NODE=$(hostname -s)

log() { echo "slurm-local: $*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "run as root: sudo bash $0 ${1:-start} (it installs packages and writes /etc/slurm)"
}

# Wait up to $1 seconds for the command in "${@:2}" to succeed.
wait_for() {
  local limit=$1; shift
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  "$@"   # one last time, showing its error
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null || die "SLURM's packages are missing (${missing[*]}) and there is no apt-get:
  this script knows Debian/Ubuntu only. Install them with your system's package manager (SLURM 22.05 or newer,
  MUNGE, slurmdbd, MariaDB), or run the pipelines on your site's cluster (profiles/slurm, docs/cluster.md)"
  log "installing ${missing[*]} (Debian packages, apt-get)"
  # The lock serializes apt with other installers on a shared machine; `apt-get update` only when the install
  # fails (a fresh image's package index may be missing or outdated).
  local apt=(env DEBIAN_FRONTEND=noninteractive flock /tmp/sciformer-apt.lock apt-get)
  "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" \
    || { "${apt[@]}" update -q && "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"; }
}

# `service` runs the Debian init script, or systemctl where systemd is init: one call for both.
ensure_service() {   # NAME CHECK... : start NAME unless CHECK succeeds; remember that we started it
  local name=$1; shift
  "$@" >/dev/null 2>&1 && return 0
  log "starting $name"
  service "$name" start >/dev/null
  mkdir -p "$STATE" && touch "$STATE/$name"
}

munge_works() { munge -n | unmunge; }

start_munge() {
  # Debian's postinst creates the key; a machine set up by hand may lack it.
  [ -s /etc/munge/munge.key ] || { mungekey --create && chown munge:munge /etc/munge/munge.key; }
  ensure_service munge munge_works
  wait_for 10 munge_works
}

start_mariadb() {
  ensure_service mariadb mysqladmin ping
  wait_for 30 mysqladmin ping
  # slurmdbd runs as the `slurm` user: MariaDB's unix_socket authentication lets it in without a password
  # file, and the socket is reachable from localhost only.
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

memory_mb() {
  # The smaller of the machine's memory and a cgroup limit (containers), less 10% for the OS and daemons.
  local kb limit mb
  kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  mb=$((kb / 1024))
  for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    limit=$(cat "$f" 2>/dev/null || echo max)
    [[ $limit =~ ^[0-9]+$ ]] && [ $((limit / 1048576)) -lt "$mb" ] && mb=$((limit / 1048576))
  done
  echo $((mb * 9 / 10))
}

slurm_conf() {
  # nproc honours the CPUs this process may use (a container's cpuset) but also OMP_NUM_THREADS: drop that.
  local cpus=${SLURM_LOCAL_CPUS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
  local mem=${SLURM_LOCAL_MEM_MB:-$(memory_mb)}
  cat <<EOF
$MARK: a single-node test cluster; edit that script, not this file.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: containers (CI, this project's machines) often cannot delegate them. linuxproc tracks a job's
# processes through their parents (one orphaned before the kill sweep can escape it; cgroups would not let
# it); task/affinity pins each task to its allocated CPUs, so a job asking for one CPU gets one; memory is
# enforced by polling each step's RSS every 5 s and killing a step that exceeds its --mem.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
JobAcctGatherParams=OverMemoryKill
# CPUs and memory are both consumable: jobs run side by side only while their --cpus-per-task and --mem fit
# on the node, so the node is never oversubscribed.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
# Accounting as on a real cluster: sacct answers from slurmdbd, and a job needs a valid account.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
# Keep each job's --comment: the Snakemake plugin puts the rule (and wildcards) there, so sacct shows them.
AccountingStoreFlags=job_comment
# Jobs run at the niceness of the sbatch that submitted them: a niced Snakemake stays polite on a shared
# machine, as a local run would.
PropagatePrioProcess=1
# A node that went down (machine restarted, slurmd restarted) comes back on its own.
ReturnToService=2
# The node's CPUs/memory below may be fewer than the hardware has; trust them rather than draining the node.
SlurmdParameters=config_overrides
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf() {
  cat <<EOF
$MARK: the accounting daemon of the single-node test cluster.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
}

# Writes FILE from stdin if its content changed; returns 0 when it did (the daemon then needs a restart).
write_if_changed() {   # FILE MODE OWNER
  local file=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
  install -m "$mode" -o "$owner" -g "$owner" "$tmp" "$file"
  rm -f "$tmp"
}

check_foreign_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ "${SLURM_LOCAL_FORCE:-0}" != 1 ]; then
    die "$CONF exists and was not written by this script (a real cluster's?); set SLURM_LOCAL_FORCE=1 to replace it"
  fi
}

running() { service "$1" status >/dev/null 2>&1; }

restart_if() {   # CHANGED NAME: restart when the config changed, start when not running
  if [ "$1" = 1 ] || ! running "$2"; then
    log "(re)starting $2"
    service "$2" restart >/dev/null
  fi
}

# sacctmgr reads stdin and loops on arguments it does not expect: give it neither.
sacctmgr_q() { timeout 30 sacctmgr -n -P "$@" </dev/null; }

# Idempotent: `sacctmgr add` fails on an entity that exists, so look it up first.
add_cluster() { [ -n "$(sacctmgr_q list cluster "name=$1" format=cluster)" ] || sacctmgr_q -i add cluster "$1" >/dev/null; }
add_account() {
  [ -n "$(sacctmgr_q list account "name=$1" format=account)" ] \
    || sacctmgr_q -i add account "$1" cluster="$CLUSTER" description="$1" organization="$1" >/dev/null
}
add_user() {   # USER ACCOUNT: the association that lets USER submit jobs under ACCOUNT
  [ -n "$(sacctmgr_q list assoc "user=$1" "account=$2" "cluster=$CLUSTER" format=user)" ] \
    || sacctmgr_q -i add user "$1" account="$2" cluster="$CLUSTER" >/dev/null
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
node_ready() { [[ "$(node_state)" =~ ^(idle|mixed|allocated)$ ]]; }

start() {
  # Not root, and a cluster this script set up is up: use it as it is (root would also update its config).
  if [ "$(id -u)" != 0 ] && grep -qF "$MARK" "$CONF" 2>/dev/null && node_ready; then
    log "cluster '$CLUSTER' is up: partition '$PARTITION', account '$ACCOUNT'"
    return 0
  fi
  need_root start
  check_foreign_config
  local t0=$SECONDS conf_changed=0 dbd_changed=0
  install_packages
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
  start_munge
  start_mariadb
  slurm_conf | write_if_changed "$CONF" 644 root && conf_changed=1
  # slurmdbd refuses a config readable by others (it may hold a database password).
  slurmdbd_conf | write_if_changed "$DBD_CONF" 600 slurm && dbd_changed=1
  restart_if "$dbd_changed" slurmdbd
  wait_for 60 sacctmgr_q list cluster
  # The cluster, account and users must exist before slurmctld registers and before any job is submitted
  # (AccountingStorageEnforce=associations rejects jobs of users without an account).
  add_cluster "$CLUSTER"
  add_account "$ACCOUNT"
  for user in root ${SUDO_USER:-} ${SLURM_LOCAL_USERS:-}; do add_user "$user" "$ACCOUNT"; done
  restart_if "$conf_changed" slurmctld
  wait_for 60 scontrol ping
  restart_if "$conf_changed" slurmd
  if ! wait_for 60 node_ready; then
    # A node marked down before this start (slurmd restarted mid-job, machine rebooted) stays down until resumed.
    scontrol update nodename="$NODE" state=resume 2>/dev/null || true
    wait_for 30 node_ready || die "node $NODE is '$(node_state)', not idle; see /var/log/slurm/slurmd.log and slurmctld.log"
  fi
  log "cluster '$CLUSTER' ready in $((SECONDS - t0)) s: partition '$PARTITION', account '$ACCOUNT'"
  sinfo -N -o "%N %P %T %c %m"
}

stop() {
  need_root stop
  for d in slurmd slurmctld slurmdbd; do running "$d" && { log "stopping $d"; service "$d" stop >/dev/null; }; done
  # The daemons leave their pid files behind; a stale /run/slurmctld.pid makes the package's removal script
  # try to cancel jobs on a controller that is gone, and fail.
  rm -f /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid
  for d in mariadb munge; do
    if [ -f "$STATE/$d" ]; then log "stopping $d"; service "$d" stop >/dev/null; rm -f "$STATE/$d"; fi
  done
  return 0
}

status() {
  for d in munge mariadb slurmdbd slurmctld slurmd; do
    printf '%-10s %s\n' "$d" "$(running "$d" && echo running || echo stopped)"
  done
  command -v sinfo >/dev/null || { echo "SLURM is not installed"; return 3; }
  sinfo -N -o "%N %P %T %c %m" || return 3
  sacctmgr_q list assoc format=cluster,account,user 2>/dev/null || true
  node_ready
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
