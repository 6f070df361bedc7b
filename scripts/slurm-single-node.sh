#!/usr/bin/env bash
# A real single-node SLURM cluster (munged, slurmctld, slurmd) for the SLURM
# launcher's test, on Debian as root:
#
#   scripts/slurm-single-node.sh start DIR   # installs slurm-wlm and munge if missing
#   scripts/slurm-single-node.sh stop DIR
#
# DIR holds the cluster's state, logs and pid files. `start` returns once
# `sinfo` shows the node idle. It overwrites /etc/slurm/slurm.conf and, if
# absent, /etc/munge/munge.key: run it on a test machine, not a real cluster.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
    for daemon in slurmd slurmctld munged; do
        if [[ -f "$dir/$daemon.pid" ]]; then
            kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

start() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "the single-node SLURM cluster needs root" >&2
        exit 1
    fi
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
    fi

    install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        head -c 1024 /dev/urandom > /etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- munged --force
    cp /run/munge/munged.pid "$dir/munged.pid"

    local host cpus memory
    host=$(hostname)
    cpus=$(nproc)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
    mkdir -p "$dir/state" "$dir/spool" /etc/slurm
    cat > /etc/slurm/slurm.conf <<EOF
ClusterName=monarch-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
ReturnToService=2
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    slurmctld
    slurmd
    for _ in $(seq 1 120); do
        if sinfo -h -o '%t' 2>/dev/null | grep -q '^idle'; then
            sinfo
            return 0
        fi
        sleep 0.5
    done
    echo "the node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    sinfo >&2 || true
    stop
    exit 1
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
