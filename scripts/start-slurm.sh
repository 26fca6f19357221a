#!/usr/bin/env bash
# A real single-node Slurm cluster (munged + slurmctld + slurmd on
# localhost) for the remote-pool tests and CI, without systemd: the daemons
# are started directly. From the verified recipe in the session's
# shared/slurm/ (its README has the timings and the quirks met); needs
# root on Debian 12 (or another Debian-like system with these packages).
#
#   bash scripts/start-slurm.sh          # start (idempotent), then: srun -n 4 prog
#   bash scripts/start-slurm.sh stop     # cancel all jobs, stop the daemons (idempotent)
#
# Start installs only what is missing (slurmctld slurmd slurm-client munge,
# --no-install-recommends: 8 packages, ~13 MB; `apt-get update` only if the
# install fails with the lists at hand), writes /etc/slurm/slurm.conf and
# restarts the daemons only when it changed, starts only daemons that are
# not running, and waits until the node is idle. About 8 s on a fresh
# machine, 0.1-0.3 s when installed.
#
# Env knobs:
#   SLURM_CPUS      CPUs the node advertises (default: max(8, nproc)); may exceed
#                   the real core count (SlurmdParameters=config_overrides).
#   SLURM_INACTIVE  InactiveLimit seconds (default 5): a job whose srun has
#                   vanished (SIGKILL of srun and its helper) is cancelled
#                   after at most ~30 s more (slurmctld checks every 30 s).
#   SLURM_WAIT      seconds to wait for the node to become idle (default 60).
#   KEEP_MUNGE=1    (stop) leaves munged running.
#
# Quirks worth knowing when writing tests against it:
#   - wrap every srun/sbatch in `timeout`; EnforcePartLimits=ALL makes an
#     impossible request (-n > CPUs) fail at once instead of queueing forever;
#     `srun -O` goes past the CPU count on purpose;
#   - SIGTERM (or scancel) ends a job's tasks at once; SIGKILL of srun and its
#     helper leaves tasks running until InactiveLimit (~30 s);
#   - sbatch jobs start at the next scheduler pass (0.3-2.7 s); srun at once.
#   Logs: /var/log/slurm/slurm{ctld,d}.log, /var/log/munge/munged.log,
#   /tmp/start-slurm-apt.log.
set -euo pipefail

T_START=$(date +%s.%N)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
log() { echo "[start-slurm +$(since "$T_START")s] $*"; }
die() { echo "[start-slurm] ERROR: $*" >&2; exit 1; }

CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

# pid_alive PIDFILE COMM -> 0 if the pid in PIDFILE is alive and named COMM
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "$2" ] || return 1
    # a killed daemon may linger as a zombie until PID 1 reaps it
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# ================================================================ stop
stop_cluster() {
    set +e  # best effort: stop whatever is running
    # Send SIGTERM to each daemon that runs (checked by pid file + name), then wait
    # for all of them together (each takes ~2 s to exit); SIGKILL after 10 s.
    running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

    stop_daemons() { # PIDFILE:COMM...
        local pf f c pid pids=""
        for pf in "$@"; do
            f=${pf%%:*}; c=${pf##*:}
            if pid_alive "$f" "$c"; then
                pid=$(cat "$f"); kill -TERM "$pid" 2>/dev/null; pids="$pids $pid:$c"
            else
                log "$c: not running"
            fi
        done
        for _ in $(seq 1 100); do
            local left=0
            for pf in $pids; do running "${pf%%:*}" && left=1; done
            [ $left = 0 ] && break; sleep 0.1
        done
        for pf in $pids; do
            if running "${pf%%:*}"; then
                kill -KILL "${pf%%:*}" 2>/dev/null; log "${pf##*:}: SIGKILLed (pid ${pf%%:*})"
            else
                log "${pf##*:}: stopped (pid ${pf%%:*})"
            fi
        done
    }

    # Cancel jobs first so no slurmstepd or task outlives the cluster.
    if pid_alive /run/slurmctld.pid slurmctld; then
        jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null)
        if [ -n "$jobs" ]; then
            timeout 10 scancel $jobs 2>/dev/null
            for _ in $(seq 1 100); do
                [ -z "$(timeout 5 squeue -h -o '%i' 2>/dev/null)" ] && break; sleep 0.1
            done
            log "cancelled jobs: $(echo $jobs)"
        fi
    fi

    DAEMONS="/run/slurmd.pid:slurmd /run/slurmctld.pid:slurmctld"
    [ "${KEEP_MUNGE:-0}" = 1 ] || DAEMONS="$DAEMONS /run/munge/munged.pid:munged"
    stop_daemons $DAEMONS
    log "stopped"
}

case "${1:-start}" in
    start) ;;
    stop) stop_cluster; exit 0 ;;
    *) die "usage: $0 [start|stop]" ;;
esac

# ================================================================ start
[ "$(id -u)" = 0 ] || die "must run as root"

NPROC=$(nproc)
SLURM_CPUS=${SLURM_CPUS:-$(( NPROC > 8 ? NPROC : 8 ))}
SLURM_INACTIVE=${SLURM_INACTIVE:-5}
SLURM_WAIT=${SLURM_WAIT:-60}
NODE=$(hostname -s)
CONF=/etc/slurm/slurm.conf

# ---------------------------------------------------------------- packages
t=$(now)
PKGS="slurmctld slurmd slurm-client munge"
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
   && command -v srun >/dev/null && command -v munged >/dev/null; then
    log "packages: already installed ($(slurmd -V))"
else
    export DEBIAN_FRONTEND=noninteractive
    APT="apt-get -q -o DPkg::Lock::Timeout=600"   # waits for another apt/dpkg
    # Without systemd the postinst scripts would try /etc/init.d (and fail
    # without a slurm.conf): forbid service starts during the install, as
    # Docker images do, unless a policy is already in place.
    OWN_POLICY=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        OWN_POLICY=1
    fi
    if ! $APT install -y --no-install-recommends $PKGS >/tmp/start-slurm-apt.log 2>&1; then
        log "packages: install failed with current lists; running apt-get update"
        $APT update >>/tmp/start-slurm-apt.log 2>&1 || true
        $APT install -y --no-install-recommends $PKGS >>/tmp/start-slurm-apt.log 2>&1 \
            || { [ $OWN_POLICY = 1 ] && rm -f /usr/sbin/policy-rc.d; tail -20 /tmp/start-slurm-apt.log; die "apt-get install failed"; }
    fi
    [ $OWN_POLICY = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "packages: installed $PKGS in $(since "$t")s ($(slurmd -V))"
fi

# ---------------------------------------------------------------- host name
# NodeAddr/SlurmctldHost use 127.0.0.1, but the short host name must resolve
# (slurmctld/slurmd compare it with the config; srun reports it).
if ! getent hosts "$NODE" >/dev/null; then
    if echo "127.0.0.1 $NODE" >> /etc/hosts; then
        log "hosts: added 127.0.0.1 $NODE to /etc/hosts"
    else
        log "hosts: WARNING: $NODE does not resolve and /etc/hosts is not writable"
    fi
fi

# ---------------------------------------------------------------- munge
t=$(now)
if [ ! -s /etc/munge/munge.key ]; then
    install -d -o munge -g munge -m 700 /etc/munge
    runuser -u munge -- mungekey -c -k /etc/munge/munge.key
    log "munge: created key"
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
if pid_alive "$MUNGE_PID" munged && munge -n >/dev/null 2>&1; then
    log "munge: munged already running (pid $(cat "$MUNGE_PID"))"
else
    # --force: start even if a stale socket/pid file is left from a killed munged
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer"
    log "munge: munged started (pid $(cat "$MUNGE_PID")) in $(since "$t")s"
fi

# ---------------------------------------------------------------- slurm.conf
MEM_MB=$(awk '/^MemTotal:/{printf "%d", $2/1024*0.9}' /proc/meminfo)
install -d /etc/slurm /var/log/slurm
install -d -m 755 /var/spool/slurmctld /var/spool/slurmd
NEWCONF=$(cat <<EOF
# Generated by start-slurm.sh: single-node test cluster on localhost.
ClusterName=localcluster
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
# Start batch jobs at once (default delays them up to 3 s).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Trust the CPU count below even if the hardware has fewer cores.
SlurmdParameters=config_overrides
ReturnToService=2
# Reject impossible requests (e.g. -n > CPUs) at once instead of queueing forever.
EnforcePartLimits=ALL
# Cancel jobs whose srun disappeared without telling slurmctld.
InactiveLimit=${SLURM_INACTIVE}
KillWait=5
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${SLURM_CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
)
CONF_CHANGED=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$NEWCONF" ]; then
    printf '%s\n' "$NEWCONF" > "$CONF"
    CONF_CHANGED=1
    log "slurm.conf: written ($CONF, node $NODE, CPUs=$SLURM_CPUS on $NPROC cores)"
else
    log "slurm.conf: unchanged"
fi

# A changed config needs a daemon restart (node definitions may have changed).
if [ $CONF_CHANGED = 1 ]; then
    for pf in "$SLURMD_PID:slurmd" "$CTLD_PID:slurmctld"; do
        f=${pf%%:*}; c=${pf##*:}
        if pid_alive "$f" "$c"; then
            p=$(cat "$f"); kill -TERM "$p"
            for _ in $(seq 1 100); do pid_alive "$f" "$c" || break; sleep 0.1; done
            log "restart: stopped $c (pid $p) for the new config"
        fi
    done
fi

# ---------------------------------------------------------------- daemons
t=$(now)
if pid_alive "$CTLD_PID" slurmctld; then
    log "slurmctld: already running (pid $(cat "$CTLD_PID"))"
else
    # -c: start from a clean state (no jobs or node states from an earlier run)
    /usr/sbin/slurmctld -c
    for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
    scontrol ping | grep -q 'is UP' || { tail -20 /var/log/slurm/slurmctld.log; die "slurmctld not up"; }
    log "slurmctld: started (pid $(cat "$CTLD_PID")) in $(since "$t")s"
fi
t=$(now)
if pid_alive "$SLURMD_PID" slurmd; then
    log "slurmd: already running (pid $(cat "$SLURMD_PID"))"
else
    /usr/sbin/slurmd
    for _ in $(seq 1 50); do pid_alive "$SLURMD_PID" slurmd && break; sleep 0.1; done
    pid_alive "$SLURMD_PID" slurmd || { tail -20 /var/log/slurm/slurmd.log; die "slurmd did not start"; }
    log "slurmd: started (pid $(cat "$SLURMD_PID")) in $(since "$t")s"
fi

# ---------------------------------------------------------------- wait idle
t=$(now); state=""
deadline=$(( $(date +%s) + SLURM_WAIT ))
while [ "$(date +%s)" -le $deadline ]; do
    state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -1)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|fail*)
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
done
case "$state" in
    idle|mixed|allocated) ;;
    *) tail -20 /var/log/slurm/slurmd.log; die "node $NODE is '$state' after ${SLURM_WAIT}s" ;;
esac
log "node $NODE is $state (waited $(since "$t")s)"
sinfo
echo "start-slurm: cluster ready in $(since "$T_START")s"
