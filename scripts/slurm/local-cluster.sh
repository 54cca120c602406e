#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (Debian's slurm-wlm + munge; run as root), for trying the
# array scripts for real without a cluster. Install first: apt-get install -y slurm-wlm munge
# Then: export SLURM_CONF=${SLURM_LOCAL_DIR:-/tmp/huescan-slurm}/etc/slurm.conf (printed at the end).
# No cgroups, no accounting: proctrack/linuxproc and task/none work in containers too.
set -euo pipefail
S=${SLURM_LOCAL_DIR:-/tmp/huescan-slurm}
mkdir -p $S/{spool,state,log,etc} /run/munge /var/log/munge /etc/munge
[ -f /etc/munge/munge.key ] || (dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null)
chown -R munge:munge /etc/munge /run/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "/usr/sbin/munged" || /usr/sbin/munged --force
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024) - 1024}' /proc/meminfo)
cat > $S/etc/slurm.conf <<CONF
ClusterName=huescan-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$S/etc/slurm.conf
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 20); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo
echo "export SLURM_CONF=$SLURM_CONF"
