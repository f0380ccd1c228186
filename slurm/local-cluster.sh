#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for kdbench's slurm tests and for trying the slurm executor.
#
#   slurm/local-cluster.sh start     # install Debian's SLURM if missing, start a fresh cluster, print `export SLURM_CONF=...`
#   slurm/local-cluster.sh status    # daemons, node state; exit 0 when the cluster answers
#   slurm/local-cluster.sh stop      # cancel jobs, stop every daemon by pid file, end this cluster's leftover job processes
#
#   eval "$(slurm/local-cluster.sh start)"   # or: source "$KDBENCH_SLURM_DIR/env" after start
#
# Every file (configuration, munge key and socket, MariaDB data, SLURM state, logs, pid files) lives under
# $KDBENCH_SLURM_DIR (default /tmp/kdbench-slurm). Ports: $KDBENCH_SLURM_PORT_BASE (default 6817) for slurmctld,
# +1 slurmd, +2 slurmdbd, +3 MariaDB, all on 127.0.0.1, so two clusters can run side by side with other bases.
# `start` on a healthy running cluster does nothing; otherwise it wipes state, database and logs together and
# starts fresh (an old state resurrects phantom jobs; wiping only one of state/database repeats job ids).
# Needs root (the daemons run as root) and Debian's packages: slurmctld slurmd slurm-client munge slurmdbd
# mariadb-server. Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

CLUSTER_DIR="${KDBENCH_SLURM_DIR:-/tmp/kdbench-slurm}"
PORT_BASE="${KDBENCH_SLURM_PORT_BASE:-6817}"
CLUSTER_NAME="${KDBENCH_SLURM_CLUSTER_NAME:-kdbench}"
NODE_NAME="kdbench-node"
NODE_CPUS=2
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
START_DEADLINE_S=60   # per daemon
STOP_DEADLINE_S=20    # per daemon, before KILL

mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR="$(cd "$CLUSTER_DIR" && pwd -P)"
ETC="$CLUSTER_DIR/etc"
RUN="$CLUSTER_DIR/run"
LOG="$CLUSTER_DIR/log"
SLURM_CONF_PATH="$ETC/slurm.conf"
MUNGE_SOCKET="$RUN/munge/munge.socket.2"
DB_SOCKET="$RUN/mariadb.sock"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
DB_PASSWORD="kdbench-local"
# Marks the daemons this script starts, so `stop` can find their children (slurmstepd) and nobody else's.
DAEMON_MARK="KDBENCH_SLURM_DAEMON=$CLUSTER_DIR"

say() { echo "local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- processes ---------------------------------------------------------------------------------------------

# Alive and not a zombie: PID 1 here reaps orphans late, and `kill -0` succeeds on a zombie.
alive() {
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

pid_from_file() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }

# stop_pid NAME PID: TERM, wait up to STOP_DEADLINE_S, then KILL.
stop_pid() {
    local name="$1" pid="$2" deadline
    alive "$pid" || return 0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_DEADLINE_S))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$pid"; then
        say "$name did not stop in ${STOP_DEADLINE_S}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    fi
}

# Pids of this cluster's job processes and daemon children: their environment carries our daemon mark, or our
# SLURM_CONF together with a SLURM job id. Never this script or its ancestors (a shell that exported SLURM_CONF).
cluster_process_pids() {
    local protected=" " pid=$$ entry env
    while [[ -n "$pid" && "$pid" != 0 ]]; do
        protected+="$pid "
        pid="$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    done
    for entry in /proc/[0-9]*; do
        pid="${entry#/proc/}"
        [[ "$protected" == *" $pid "* ]] && continue
        alive "$pid" || continue
        env="$(tr '\0' '\n' 2>/dev/null <"$entry/environ")" || continue
        if grep -qxF "$DAEMON_MARK" <<<"$env" \
            || { grep -qxF "SLURM_CONF=$SLURM_CONF_PATH" <<<"$env" && grep -q '^SLURM_JOB_ID=' <<<"$env"; }; then
            echo "$pid"
        fi
    done
}

# wait_for DESCRIPTION DEADLINE_S COMMAND...: poll COMMAND (each try bounded by `timeout`) until it succeeds.
wait_for() {
    local what="$1" limit="$2" deadline
    shift 2
    deadline=$((SECONDS + limit))
    until timeout 5 "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# --- packages ----------------------------------------------------------------------------------------------

packages_present() {
    local binary
    for binary in slurmctld slurmd slurmdbd sinfo sbatch sacct munged mungekey mariadbd mariadb-install-db; do
        command -v "$binary" >/dev/null 2>&1 || [[ -x "/usr/sbin/$binary" ]] || return 1
    done
}

install_packages() {
    packages_present && return 0
    [[ "$(id -u)" == 0 ]] || die "SLURM is not installed and installing it needs root (apt-get install ${PACKAGES[*]})"
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get to install it"
    say "installing ${PACKAGES[*]}"
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        # Keep the packages' postinst scripts from starting system daemons on their default ports.
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0)
    if ! apt-cache policy slurmctld 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        "${apt[@]}" update >&2
    fi
    if ! "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >&2; then
        "${apt[@]}" update >&2
        "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >&2 || {
            ((created_policy)) && rm -f "$policy"
            die "apt-get install ${PACKAGES[*]} failed"
        }
    fi
    ((created_policy)) && rm -f "$policy"
    packages_present || die "packages installed but some SLURM/munge/MariaDB programs are still missing"
}

# --- configuration -----------------------------------------------------------------------------------------

write_configuration() {
    local host memory_mb
    host="$(hostname -s)"
    # Leave 10% of the machine to the system; split the rest over the CPUs so two 1-CPU jobs run side by side.
    memory_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    cat >"$SLURM_CONF_PATH" <<EOF
# Written by slurm/local-cluster.sh: a single-node test cluster on 127.0.0.1 (no cgroups, no systemd).
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$CLUSTER_DIR/state
SlurmdSpoolDir=$CLUSTER_DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
InactiveLimit=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# The default batch_sched_delay (3 s) makes every sbatch wait; 0 lets a trivial job round-trip in about a second.
SchedulerParameters=batch_sched_delay=0
# Use the CPU count below even on a machine with fewer cores.
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Connections to slurmdbd ignore AuthInfo; this is how they find the munge socket.
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE_NAME NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$NODE_CPUS RealMemory=$memory_mb State=UNKNOWN
# Without DefMemPerCPU every job takes the whole node's memory and jobs run one at a time.
PartitionName=debug Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$((memory_mb / NODE_CPUS))
EOF
    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF and insists on mode 600.
    cat >"$ETC/slurmdbd.conf" <<EOF
# Written by slurm/local-cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
    echo "export SLURM_CONF=$SLURM_CONF_PATH" >"$CLUSTER_DIR/env"
}

# --- daemons -----------------------------------------------------------------------------------------------

daemon_env() { env SLURM_CONF="$SLURM_CONF_PATH" "$DAEMON_MARK" "$@"; }

start_munge() {
    mkdir -p "$RUN/munge"
    chmod 755 "$RUN/munge"
    mungekey --create --keyfile="$ETC/munge.key" >&2
    chmod 400 "$ETC/munge.key"
    # munged refuses sockets below directories that are not o+x (e.g. under /root); --force runs it anyway,
    # which is safe here because only root talks to this cluster.
    daemon_env munged --force --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$RUN/munged.seed" </dev/null >>"$LOG/munged.log" 2>&1 \
        || die "munged did not start; see $LOG/munged.log"
    wait_for munge "$START_DEADLINE_S" bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'" \
        || die "munge does not answer; see $LOG/munged.log"
}

start_mariadb() {
    mkdir -p "$CLUSTER_DIR/mariadb"
    mariadb-install-db --no-defaults --datadir="$CLUSTER_DIR/mariadb" --user=root --skip-test-db \
        --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed; see $LOG/mariadb-install.log"
    # mariadbd stays in the foreground: detach it into its own session with no tie to our stdio.
    setsid env SLURM_CONF="$SLURM_CONF_PATH" "$DAEMON_MARK" mariadbd --no-defaults --user=root --datadir="$CLUSTER_DIR/mariadb" --socket="$DB_SOCKET" \
        --pid-file="$RUN/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$LOG/mariadb.log" --innodb-buffer-pool-size=32M --skip-log-bin \
        </dev/null >>"$LOG/mariadb.log" 2>&1 &
    wait_for mariadb "$START_DEADLINE_S" mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping \
        || die "MariaDB does not answer; see $LOG/mariadb.log"
    mariadb --no-defaults --socket="$DB_SOCKET" -u root <<EOF || die "could not create the slurm database user"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurm_daemons() {
    daemon_env slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 || die "slurmdbd did not start; see $LOG/slurmdbd.log"
    wait_for slurmdbd "$START_DEADLINE_S" bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT" \
        || die "slurmdbd does not listen on port $DBD_PORT; see $LOG/slurmdbd.log"
    daemon_env slurmctld -i </dev/null >>"$LOG/slurmctld.log" 2>&1 || die "slurmctld did not start; see $LOG/slurmctld.log"
    wait_for slurmctld "$START_DEADLINE_S" env SLURM_CONF="$SLURM_CONF_PATH" scontrol ping \
        || die "slurmctld does not answer; see $LOG/slurmctld.log"
    daemon_env slurmd -N "$NODE_NAME" </dev/null >>"$LOG/slurmd.log" 2>&1 || die "slurmd did not start; see $LOG/slurmd.log"
    wait_for "node idle" "$START_DEADLINE_S" bash -c \
        "SLURM_CONF='$SLURM_CONF_PATH' sinfo -h -N -n '$NODE_NAME' -o %T | grep -qx idle" \
        || die "node $NODE_NAME is not idle; see $LOG/slurmd.log and $LOG/slurmctld.log"
    wait_for sacct "$START_DEADLINE_S" env SLURM_CONF="$SLURM_CONF_PATH" sacct -n -a -X \
        || die "sacct does not answer; see $LOG/slurmdbd.log"
}

DAEMONS=(slurmd slurmctld slurmdbd mariadb munged)   # stop order; start order is the reverse

daemons_alive() {
    local daemon
    for daemon in "${DAEMONS[@]}"; do alive "$(pid_from_file "$RUN/$daemon.pid")" || return 1; done
}

healthy() {
    daemons_alive \
        && timeout 10 env SLURM_CONF="$SLURM_CONF_PATH" sinfo -h -N -n "$NODE_NAME" -o %T 2>/dev/null \
            | grep -Eqx 'idle|mixed|allocated|completing' \
        && timeout 10 env SLURM_CONF="$SLURM_CONF_PATH" sacct -n -a -X >/dev/null 2>&1
}

# --- commands ----------------------------------------------------------------------------------------------

cmd_start() {
    [[ "$(id -u)" == 0 ]] || die "the local cluster runs its daemons as root; run this as root"
    install_packages
    if [[ -f "$SLURM_CONF_PATH" ]] && healthy; then
        say "already running in $CLUSTER_DIR"
        echo "export SLURM_CONF=$SLURM_CONF_PATH"
        return 0
    fi
    local started=$SECONDS
    cmd_stop quiet
    # Fresh every time: state, database, spool, logs and pid files go together.
    rm -rf "$ETC" "$RUN" "$LOG" "$CLUSTER_DIR/state" "$CLUSTER_DIR/spool" "$CLUSTER_DIR/mariadb" "$CLUSTER_DIR/env"
    mkdir -p "$ETC" "$RUN" "$LOG" "$CLUSTER_DIR/state" "$CLUSTER_DIR/spool"
    chmod 755 "$CLUSTER_DIR" "$RUN"
    write_configuration
    say "starting munge"; start_munge
    say "starting MariaDB"; start_mariadb
    say "starting slurmdbd, slurmctld, slurmd"; start_slurm_daemons
    say "cluster '$CLUSTER_NAME' up in $((SECONDS - started))s ($CLUSTER_DIR; env file $CLUSTER_DIR/env)"
    echo "export SLURM_CONF=$SLURM_CONF_PATH"
}

cmd_stop() {
    local quiet="${1:-}" pid daemon deadline
    if [[ -f "$SLURM_CONF_PATH" ]] && alive "$(pid_from_file "$RUN/slurmctld.pid")"; then
        # Cancel every job, then give the queue a bounded time to drain.
        local jobs
        jobs="$(timeout 10 env SLURM_CONF="$SLURM_CONF_PATH" squeue -h -o %A 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            say "cancelling $(wc -w <<<"$jobs") job(s)"
            # shellcheck disable=SC2086
            timeout 10 env SLURM_CONF="$SLURM_CONF_PATH" scancel $jobs 2>/dev/null || true
            deadline=$((SECONDS + 20))
            while ((SECONDS < deadline)); do
                jobs="$(timeout 5 env SLURM_CONF="$SLURM_CONF_PATH" squeue -h -o %A 2>/dev/null || echo busy)"
                [[ -z "$jobs" ]] && break
                sleep 0.5
            done
        fi
    fi
    for daemon in "${DAEMONS[@]}"; do
        stop_pid "$daemon" "$(pid_from_file "$RUN/$daemon.pid")"
    done
    # Anything left of this cluster (job steps, job processes, a daemon whose pid file was lost).
    for pid in $(cluster_process_pids); do stop_pid "leftover process" "$pid"; done
    [[ "$quiet" == quiet ]] || say "stopped ($CLUSTER_DIR)"
}

cmd_status() {
    local daemon pid
    for daemon in munged mariadb slurmdbd slurmctld slurmd; do
        pid="$(pid_from_file "$RUN/$daemon.pid")"
        if alive "$pid"; then say "$daemon: running (pid $pid)"; else say "$daemon: not running"; fi
    done
    if [[ -f "$SLURM_CONF_PATH" ]] && healthy; then
        timeout 10 env SLURM_CONF="$SLURM_CONF_PATH" sinfo >&2 || true
        echo "export SLURM_CONF=$SLURM_CONF_PATH"
        return 0
    fi
    say "cluster in $CLUSTER_DIR is not running"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status   (directory: \$KDBENCH_SLURM_DIR, default /tmp/kdbench-slurm)" >&2
        exit 2
        ;;
esac
