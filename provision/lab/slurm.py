"""A real Slurm cluster out of lab hosts: munge, slurmctld on a login host, slurmd on compute hosts, one shared directory.

Made of hosts of the lab's Apptainer flavour (Lab.up(..., flavour=rootfs.APPTAINER_FLAVOUR): Debian
sid with the vendor's Apptainer, which jobs run unprivileged). Debian's slurm-wlm and munge, started
by hand (the hosts have no systemd): munged first, then
slurmctld -D on the login host and slurmd -D -N NODE on each compute host. A directory of this
machine is bound into every host at the same path, as the cluster file system. Every wait is
bounded: with munged down, every slurm command hangs retrying.
"""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from provision.lab import mounts, rootfs
from provision.lab.aptcache import PROXY_URL
from provision.lab.commands import LabError, run
from provision.lab.host import MachineDir, init_pid
from provision.lab.lab import Lab

CLUSTER_NAME = "provlab"
CTLD_PORT = 6817
SLURMD_PORT = 6818
MUNGE_SOCKET = "/run/munge/munge.socket.2"
MUNGE_KEY_DIR = "/etc/munge-lab"          # 0700, root's: munged refuses a key others can reach
APT = f"apt-get -q -o Acquire::http::Proxy={PROXY_URL} -o Acquire::http::Proxy::10.200.0.1=DIRECT"
PACKAGES = ("slurm-wlm", "munge", "procps")
READY_TIMEOUT = 60.0   # seconds for munged, slurmctld and every slurmd to answer
GPU_DEVICE = "/dev/nvidia0"  # made with mknod on gpu nodes; Slurm counts a gpu gres by its file
# slurmd 22.05 refuses to start without a cgroup file system, even with proctrack/linuxproc and
# task/none; a tmpfs at /sys/fs/cgroup passes as cgroup v1 and nothing is ever created in it.
# (CgroupAutomount=no is the default, and Slurm 26.05 refuses the option as defunct.)
CGROUP_CONF = "CgroupPlugin=cgroup/v1\n"
COMMAND_TIMEOUT = 20   # seconds any slurm command run here may take (they hang while munge is down)


@dataclass(frozen=True)
class Partition:
    """One partition of the lab cluster: its nodes, its time limit, whether it is the default."""

    name: str
    nodes: tuple[str, ...]
    max_time: str = "01:00:00"
    default: bool = False


@dataclass(frozen=True)
class SlurmCluster:
    """A lab Slurm cluster: the login host (slurmctld), compute hosts (slurmd), partitions, shared directory."""

    login: str
    nodes: tuple[str, ...]
    shared_dir: Path                  # on this machine
    mount_point: str = "/shared"      # the same path on every host
    partitions: tuple[Partition, ...] = field(default=())
    gpu_nodes: tuple[str, ...] = ()   # nodes that declare gpu gres (no device behind it)
    gpu_types: tuple[tuple[str, str], ...] = ()      # (node, gres type such as v100): typed gres gpu:TYPE:1
    node_features: tuple[tuple[str, str], ...] = ()  # (node, features such as nvidia_driver_580.95.05)

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.login, *self.nodes)


def default_partitions(nodes: tuple[str, ...]) -> tuple[Partition, ...]:
    """`debug` over every node (the default, one hour at most)."""
    return (Partition("debug", nodes, "01:00:00", default=True),)


def slurm_conf(lab: Lab, cluster: SlurmCluster) -> str:
    """The cluster's slurm.conf: munge auth, no cgroups, cons_tres, limits enforced at submit."""
    login = lab.host(cluster.login)
    lines = [
        "# The provision lab's Slurm cluster (written by provision/lab/slurm.py).",
        f"ClusterName={CLUSTER_NAME}",
        f"SlurmctldHost={login.name}({login.address})",
        f"SlurmctldPort={CTLD_PORT}",
        f"SlurmdPort={SLURMD_PORT}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={MUNGE_SOCKET}",
        "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "EnforcePartLimits=ALL",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        "StateSaveLocation=/var/spool/slurmctld",
        "SlurmdSpoolDir=/var/spool/slurmd",
        "SlurmctldPidFile=/run/slurmctld.pid",
        "SlurmdPidFile=/run/slurmd.pid",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "MinJobAge=300",
        "KillWait=5",
        "MessageTimeout=60",  # the lab's machine is shared and busy: Slurm's default 10 s times sbatch out
    ]
    types, features = dict(cluster.gpu_types), dict(cluster.node_features)
    for name in cluster.nodes:
        gres = (f" Gres=gpu:{types[name]}:1" if name in types else " Gres=gpu:1") if name in cluster.gpu_nodes else ""
        feature = f" Features={features[name]}" if name in features else ""
        lines.append(f"NodeName={name} NodeAddr={lab.host(name).address} CPUs=2 RealMemory=256{gres}{feature} "
                     f"State=UNKNOWN")
    for part in cluster.partitions or default_partitions(cluster.nodes):
        default = " Default=YES" if part.default else ""
        lines.append(f"PartitionName={part.name} Nodes={','.join(part.nodes)} MaxTime={part.max_time}{default} State=UP")
    return "\n".join(lines) + "\n"


def gres_conf(cluster: SlurmCluster) -> str:
    """One gpu per gpu node, on a device node with NVIDIA's numbers and nothing behind it (Slurm counts files)."""
    lines = ["# provision lab: GPUs Slurm counts; the lab has no device behind them.", "AutoDetect=off"]
    types = dict(cluster.gpu_types)
    lines += [f"NodeName={name} Name=gpu" + (f" Type={types[name]}" if name in types else "") + f" File={GPU_DEVICE}"
              for name in cluster.gpu_nodes]
    return "\n".join(lines) + "\n"


# -- packages ---------------------------------------------------------------------------------

def install_packages(lab: Lab, name: str, packages: tuple[str, ...] = PACKAGES) -> None:
    """Install `packages` through the lab's apt cache; nothing when all are installed already."""
    wanted = " ".join(shlex.quote(p) for p in packages)
    lab.exec(name, f"have=$(dpkg-query -W -f '${{Status}}\\n' {wanted} 2>/dev/null | grep -c 'install ok installed'); "
                   f"[ \"$have\" = {len(packages)} ] || {{ {APT} update >/dev/null && "
                   f"DEBIAN_FRONTEND=noninteractive {APT} install -y --no-install-recommends {wanted} >/dev/null; }}")


# -- the shared directory ----------------------------------------------------------------------

def _init_pid(lab: Lab, name: str) -> int:
    pid = init_pid(lab.host(name), MachineDir(lab.rootfs(name).parent))
    if pid is None:
        raise LabError(f"lab host {name} is not running")
    return pid


def mount_shared(lab: Lab, name: str, shared_dir: Path, mount_point: str) -> None:
    """Bind `shared_dir` of this machine at `mount_point` inside the running host (its own mount namespace)."""
    if lab.exec(name, f"mountpoint -q {shlex.quote(mount_point)}", check=False).returncode == 0:
        return
    try:
        mounts.bind_into_host(shared_dir, _init_pid(lab, name), mount_point)
    except LabError as exc:
        raise LabError(f"lab host {name}: cannot bind {shared_dir} at {mount_point}: {exc}") from None


def share_home(lab: Lab, cluster: SlurmCluster, home_dir: Path) -> None:
    """One /home for every host of the cluster, as clusters share home directories: the login host's
    /home copied (owners kept) into `home_dir` of this machine once, bound at /home in each host."""
    if not home_dir.exists():
        home_dir.parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", str(lab.rootfs(cluster.login) / "home"), str(home_dir)], what="copying the login host's /home")
    for name in cluster.hosts:
        mount_shared(lab, name, home_dir, "/home")


def unmount_shared(lab: Lab, name: str, mount_point: str) -> None:
    """Undo mount_shared (a stopped host has nothing to undo)."""
    try:
        lab.exec(name, f"! mountpoint -q {shlex.quote(mount_point)} || umount --lazy {shlex.quote(mount_point)}",
                 check=False)
    except LabError:
        return


# -- daemons -----------------------------------------------------------------------------------

def _daemon(lab: Lab, name: str, pattern: str, command: str, log: str) -> None:
    """Start `command` detached in the host unless a process matching `pattern` (pgrep -x) runs there."""
    lab.exec(name, f"pgrep -x {shlex.quote(pattern)} >/dev/null || "
                   f"setsid -f sh -c {shlex.quote(f'exec {command}')} >>{log} 2>&1 </dev/null")


def start_munge(lab: Lab, name: str, key: bytes) -> None:
    """The shared munge key in a 0700 directory, the socket directory world-executable, munged running."""
    lab.exec(name, f"install -d -m 0700 {MUNGE_KEY_DIR} && cat > {MUNGE_KEY_DIR}/munge.key && "
                   f"chmod 0400 {MUNGE_KEY_DIR}/munge.key && install -d -m 0755 /run/munge /var/lib/munge /var/log/munge",
             input=key)
    _daemon(lab, name, "munged", f"munged --foreground --force --key-file={MUNGE_KEY_DIR}/munge.key "
                                 f"--socket={MUNGE_SOCKET} --pid-file=/run/munge/munged.pid "
                                 f"--seed-file=/var/lib/munge/munged.seed", "/var/log/munge/lab.log")
    _wait(lab, name, f"munge -n -S {MUNGE_SOCKET} | unmunge -S {MUNGE_SOCKET} >/dev/null", "munged")


def write_config(lab: Lab, cluster: SlurmCluster, name: str) -> None:
    for path, text in (("etc/slurm/slurm.conf", slurm_conf(lab, cluster)), ("etc/slurm/gres.conf", gres_conf(cluster)),
                       ("etc/slurm/cgroup.conf", CGROUP_CONF)):
        target = lab.rootfs(name) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    lab.exec(name, "install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm")


def _wait(lab: Lab, name: str, check: str, what: str, timeout: float = READY_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = lab.exec(name, f"timeout {COMMAND_TIMEOUT} sh -c {shlex.quote(check)}", check=False)
        if done.returncode == 0:
            return done.stdout
        if time.monotonic() > deadline:
            raise LabError(f"lab host {name}: {what} not ready within {timeout:g}s: {(done.stderr or done.stdout).strip()[-400:]}")
        time.sleep(0.5)


def ensure_cluster(lab: Lab, cluster: SlurmCluster, extra_packages: tuple[str, ...] = ()) -> SlurmCluster:
    """Make the hosts a running Slurm cluster (idempotent): packages, shared directory, munge, daemons, nodes idle."""
    cluster.shared_dir.mkdir(parents=True, exist_ok=True)
    uid, gid = rootfs.sudo_user_ids(lab.rootfs(cluster.login))
    os.chown(cluster.shared_dir, uid, gid)
    key_file = cluster.shared_dir.parent / f".{cluster.shared_dir.name}.munge.key"
    if not key_file.exists():
        key_file.write_bytes(os.urandom(1024))
        key_file.chmod(0o600)
    key = key_file.read_bytes()
    for name in cluster.hosts:
        install_packages(lab, name, (*PACKAGES, *extra_packages))
        mount_shared(lab, name, cluster.shared_dir, cluster.mount_point)
        write_config(lab, cluster, name)
        start_munge(lab, name, key)
    _daemon(lab, cluster.login, "slurmctld", "slurmctld -D", "/var/log/slurm/slurmctld.out")
    _wait(lab, cluster.login, "scontrol ping | grep -q UP", "slurmctld")
    for name in cluster.nodes:
        lab.exec(name, "mountpoint -q /sys/fs/cgroup || mount -t tmpfs -o size=1m,mode=755 cgroup /sys/fs/cgroup")
        if name in cluster.gpu_nodes:
            lab.exec(name, f"[ -e {GPU_DEVICE} ] || mknod -m 666 {GPU_DEVICE} c 195 0")
        _daemon(lab, name, "slurmd", f"slurmd -D -N {name}", "/var/log/slurm/slurmd.out")
    nodes = ",".join(cluster.nodes)
    _wait(lab, cluster.login, f"test -z \"$(sinfo -h -N -n {nodes} -t down,drain,unknown,fail,no_respond -o %N)\" && "
                              f"test \"$(sinfo -h -N -n {nodes} -o %N | sort -u | wc -l)\" -eq {len(cluster.nodes)}",
          "every slurmd")
    return cluster


def stop_cluster(lab: Lab, cluster: SlurmCluster) -> None:
    """Stop the daemons and unbind the shared directory; the hosts stay up (others share the lab)."""
    for name in cluster.hosts:
        try:
            lab.exec(name, "pkill -x slurmd; pkill -x slurmctld; pkill -x munged; true", check=False)
        except LabError:
            continue
        unmount_shared(lab, name, cluster.mount_point)
        unmount_shared(lab, name, "/home")  # when share_home bound it
