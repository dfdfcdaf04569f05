#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests/test_slurm.py and for
# trying profiles/slurm by hand. Debian's slurm-wlm and munge, no systemd, no
# cgroups, no accounting database.
#
#   tests/slurm/local_slurm.sh start    install slurm-wlm and munge if missing, write the
#                                       config, start munged, slurmctld and slurmd, wait
#                                       until the node is idle (idempotent)
#   tests/slurm/local_slurm.sh stop     cancel this cluster's jobs, stop the daemons this
#                                       script started (by their recorded PIDs only)
#   tests/slurm/local_slurm.sh status   which daemons run, sinfo, squeue
#
# Environment:
#   TINYML_SLURM_DIR        state, spool, log and PID files (default /tmp/tinyml-slurm)
#   TINYML_SLURM_PARTITION  name of the one partition, marked Default (default debug)
#
# Exit status: 0 ok; 2 usage; 3 not root, or SLURM or munge missing and impossible to
# install here (no apt-get, or apt-get failed): the tests skip on 3 only;
# 1 any other failure (a daemon died, the node never became idle: the log tail is printed).
#
# Accounting: none (AccountingStorageType=accounting_storage/none, no slurmdbd, no
# MariaDB). snakemake-executor-plugin-slurm polls job states with `squeue` when told
# to (slurm_status_command: squeue), and squeue keeps finished jobs for MinJobAge
# seconds, set to a day here. Finished jobs are also written, one line each, to
# $TINYML_SLURM_DIR/log/jobcomp.log (jobcomp/filetxt).
#
# SLURM's client commands and the `srun` that the plugin runs inside every job read
# /etc/slurm/slurm.conf (the plugin removes SLURM_* variables, SLURM_CONF included,
# from that srun's environment), so `start` links /etc/slurm/slurm.conf to this
# cluster's config. It never replaces a slurm.conf that it did not write.

set -euo pipefail

SLURM_DIR="${TINYML_SLURM_DIR:-/tmp/tinyml-slurm}"
PARTITION="${TINYML_SLURM_PARTITION:-debug}"
CONF="$SLURM_DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
MARKER="# Written by tinyml-quant tests/slurm/local_slurm.sh"
MUNGE_SOCKET="$SLURM_DIR/munge/munge.socket"
DAEMONS=(munged slurmctld slurmd)

say() { echo "local_slurm: $*"; }
die() { echo "local_slurm: error: $1" >&2; exit "${2:-1}"; }

pid_file() { echo "$SLURM_DIR/run/$1.pid"; }

# The PID recorded for daemon $1 if that process still runs and is that daemon.
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [[ -s "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] || return 1
    echo "$pid"
}

all_running() {
    local daemon
    for daemon in "${DAEMONS[@]}"; do
        running_pid "$daemon" >/dev/null || return 1
    done
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    for tool in slurmctld slurmd sinfo sbatch squeue scontrol; do
        command -v "$tool" >/dev/null || { missing+=(slurm-wlm); break; }
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get to install them (Debian/Ubuntu only)" 3
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq >"$SLURM_DIR/log/apt.log" 2>&1 \
        || ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$SLURM_DIR/log/apt.log" 2>&1; then
        tail -n 20 "$SLURM_DIR/log/apt.log" >&2
        die "apt-get could not install slurm-wlm munge (see $SLURM_DIR/log/apt.log)" 3
    fi
    if ! command -v munged >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null; then
        die "slurm-wlm and munge installed but their daemons are not on PATH ($PATH)" 3
    fi
}

# CPUs and memory as slurmd sees them, so the node registers without a mismatch.
node_line() {
    local host detected cpus memory
    host="$(hostname -s)"
    detected="$(slurmd -C 2>/dev/null | head -n 1 || true)"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$detected")"
    memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")"
    [[ -n "$cpus" ]] || cpus="$(nproc)"
    [[ -n "$memory" ]] || memory="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"
    # A little under the detected figure: slurmd drains a node that has less than configured.
    memory=$((memory * 95 / 100))
    echo "NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN"
}

# The config for this machine, on stdout.
config_text() {
    local host
    host="$(hostname -s)"
    cat <<EOF
$MARKER
# A single node on localhost; see the script for why each setting is there.
ClusterName=tinyml
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$SLURM_DIR/state/slurmctld
SlurmdSpoolDir=$SLURM_DIR/state/slurmd
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.daemon.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.daemon.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers rarely delegate them): plain process tracking, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
# No slurmdbd: squeue answers the status polls and keeps finished jobs for an hour.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.log
# A day: the test's and the plugin's squeue calls must still see every job of a long run.
MinJobAge=86400
$(node_line)
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

link_system_config() {
    if [[ -L "$SYSTEM_CONF" || -e "$SYSTEM_CONF" ]]; then
        if ! head -n 1 "$SYSTEM_CONF" 2>/dev/null | grep -qxF "$MARKER"; then
            die "$SYSTEM_CONF exists and was not written by this script; refusing to replace it (is this a real SLURM host?)"
        fi
        rm -f "$SYSTEM_CONF"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

# Start daemon $1 in the foreground of its own session, record its PID.
start_daemon() {
    local name="$1"
    shift
    if running_pid "$name" >/dev/null; then
        return 0
    fi
    setsid "$@" >>"$SLURM_DIR/log/$name.stdout" 2>&1 </dev/null &
    echo $! >"$(pid_file "$name")"
    sleep 1
    running_pid "$name" >/dev/null || {
        tail -n 20 "$SLURM_DIR/log/$name.stdout" "$SLURM_DIR/log/$name.log" 2>/dev/null >&2 || true
        die "$name exited at once (logs above, in $SLURM_DIR/log)"
    }
}

start_munge() {
    local key="$SLURM_DIR/munge/munge.key"
    if [[ ! -s "$key" ]]; then
        say "creating a munge key in $key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key"
        else
            dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        fi
    fi
    chmod 0600 "$key"
    start_daemon munged munged --foreground --force \
        --key-file="$key" --socket="$MUNGE_SOCKET" \
        --pid-file="$SLURM_DIR/run/munged.daemon.pid" \
        --log-file="$SLURM_DIR/log/munged.log" \
        --seed-file="$SLURM_DIR/munge/munged.seed"
    local tries=0
    until munge --socket="$MUNGE_SOCKET" -n </dev/null 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [[ $tries -lt 20 ]] || die "munged does not answer on $MUNGE_SOCKET (see $SLURM_DIR/log/munged.log)"
        sleep 0.5
    done
}

wait_for_idle() {
    local host state tries=0
    host="$(hostname -s)"
    while :; do
        state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null | head -n 1 || true)"
        case "$state" in
            idle | mixed | allocated | completing) say "node $host is $state"; return 0 ;;
            down* | drain* | fail*)
                # Left down by an earlier run or a restart: resume it once.
                scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        tries=$((tries + 1))
        if [[ $tries -ge 60 ]]; then
            tail -n 20 "$SLURM_DIR/log/slurmctld.log" "$SLURM_DIR/log/slurmd.log" >&2 || true
            die "node $host not idle after 60 s (state '${state:-unknown}'; logs above)"
        fi
        for daemon in "${DAEMONS[@]}"; do
            running_pid "$daemon" >/dev/null || {
                tail -n 20 "$SLURM_DIR/log/$daemon.log" "$SLURM_DIR/log/$daemon.stdout" >&2 2>/dev/null || true
                die "$daemon died while waiting for the node (logs above)"
            }
        done
        sleep 1
    done
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "not root: this script installs packages and runs the SLURM daemons as root" 3
    mkdir -p "$SLURM_DIR"/{log,run,state/slurmctld,state/slurmd,munge}
    chmod 0700 "$SLURM_DIR/munge"
    install_packages
    local wanted
    wanted="$(config_text)"
    if all_running && [[ -f "$CONF" && "$(<"$CONF")" == "$wanted" ]]; then
        say "already running (config $CONF)"
        wait_for_idle
        return 0
    fi
    # A partial cluster (a daemon died) or a changed config: stop what is left, start afresh.
    stop_daemons
    printf '%s\n' "$wanted" >"$CONF"
    link_system_config
    start_munge
    start_daemon slurmctld slurmctld -D -i -f "$CONF"
    start_daemon slurmd slurmd -D -f "$CONF"
    wait_for_idle
    say "up: partition '$PARTITION', config $CONF, logs in $SLURM_DIR/log"
}

stop_daemons() {
    local daemon pid _
    for daemon in slurmd slurmctld munged; do
        pid="$(running_pid "$daemon")" || { rm -f "$(pid_file "$daemon")"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$daemon" ]] || break
            sleep 0.5
        done
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$daemon" ]]; then
            say "$daemon ($pid) ignored SIGTERM for 15 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $daemon ($pid)"
        rm -f "$(pid_file "$daemon")"
    done
}

cmd_stop() {
    if running_pid slurmctld >/dev/null; then
        # This cluster's jobs only: it is the only cluster this config knows.
        local jobs
        jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ' || true)"
        if [[ -n "${jobs// /}" ]]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            sleep 2
        fi
    fi
    stop_daemons
    if [[ -L "$SYSTEM_CONF" && "$(readlink "$SYSTEM_CONF")" == "$CONF" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
}

cmd_status() {
    local daemon pid rc=0
    for daemon in "${DAEMONS[@]}"; do
        if pid="$(running_pid "$daemon")"; then
            echo "$daemon: running ($pid)"
        else
            echo "$daemon: not running"
            rc=1
        fi
    done
    if [[ $rc -eq 0 ]]; then
        sinfo
        squeue
    fi
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
