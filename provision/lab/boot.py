"""The shell scripts that boot a lab host and boot it again when it asks for a reboot."""

from pathlib import Path
from shlex import quote

from provision.lab.rootfs import REBOOT_FLAG

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# systemd-nspawn exits with this status when the system inside it asked to reboot.
NSPAWN_REBOOT_STATUS = 133

# A planted stand-in PCI tree (Lab.plant_gpu) is bound over /sys/bus/pci/devices at boot.
PCI_STANDIN_DIR = "var/lib/provision-lab/pci-devices"

DEVICE_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                "urandom": (1, 9), "tty": (5, 0)}


def detach_others_script(root: Path) -> str:
    """sh lines dropping, from this fresh mount namespace, the other hosts' roots and netns.

    Copies of them would keep other hosts' overlays busy and their netns alive after teardown.
    """
    return f"""for other in {quote(str(root.parent.parent))}/*/root /run/netns; do
    [ "$other" = {quote(str(root))} ] || umount --recursive --lazy "$other" 2>/dev/null || true
done"""


def supervisor_script(name: str, root: Path, machine: Path, systemd: bool, cgroups: list[Path] = ()) -> str:
    """Boot the host once, and again while its boot ends in a reboot request; then exit.

    Runs on this machine inside the host's netns, detached; the lab kills it to stop the host.
    With `cgroups` (a host without systemd that runs dockerd), the host boots in those cgroups and
    a cgroup namespace rooted at them: its dockerd sees them as the whole tree.
    """
    namespaces = "--mount --propagation private" if systemd else (
        "--mount --uts --ipc --pid --fork --kill-child --propagation private")
    join = ""
    if cgroups:
        namespaces += " --cgroup"
        procs = " ".join(quote(str(cgroup / "cgroup.procs")) for cgroup in cgroups)
        join = f'for procs in {procs}; do echo $$ > "$procs"; done\n'
    return f"""#!/bin/sh
# Supervisor of lab host {name} (written by provision/lab/boot.py).
root={quote(str(root))}
machine={quote(str(machine))}
{join}while :; do
    rm -f "$root/{REBOOT_FLAG}"
    cat /proc/sys/kernel/random/uuid > "$machine/boot_id"
    echo "== provision lab: booting {name} at $(date -u +%FT%TZ)"
    unshare {namespaces} sh "$machine/boot.sh"
    status=$?
    echo "== provision lab: {name} stopped with status $status"
    [ -e "$root/{REBOOT_FLAG}" ] || [ "$status" = {NSPAWN_REBOOT_STATUS} ] || break
done
"""


def tini_boot_script(name: str, root: Path, machine: Path, pivot_root: bool = False,
                     cgroup_mounts: tuple[tuple[str, str, str], ...] = ()) -> str:
    """As PID 1 of fresh namespaces: mount the host's API filesystems, then exec sshd under tini.

    The host enters its root with chroot, or with `pivot_root` (the root then is the mount
    namespace's own, as in a container; Apptainer refuses to run in a chroot). `cgroup_mounts`
    (this machine's cgroup hierarchies, seen from the host's cgroup namespace) are mounted where
    they are here, as systemd would mount them, for dockerd.
    """
    device_nodes = "\n".join(f'mknod -m 666 "$root/dev/{node}" c {major} {minor}'
                             for node, (major, minor) in DEVICE_NODES.items())
    return f"""#!/bin/sh
# Boot of lab host {name} without systemd (written by provision/lab/boot.py).
set -eu
root={quote(str(root))}
machine={quote(str(machine))}
hostname {quote(name)}
{detach_others_script(root)}
ro_bind() {{ mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"; }}
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# /proc/sys read-only: most sysctls written in a host would change this whole machine.
ro_bind "$root/proc/sys" "$root/proc/sys"
[ ! -e "$root/proc/sysrq-trigger" ] || ro_bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
ro_bind "$machine/boot_id" "$root/proc/sys/kernel/random/boot_id"
# but /proc/sys/net is the host's own netns: writable, as docker's ip_forward needs.
mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
mount -o remount,bind,rw "$root/proc/sys/net"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
{_cgroup_lines(cgroup_mounts)}[ ! -d "$root/{PCI_STANDIN_DIR}" ] || mount --bind "$root/{PCI_STANDIN_DIR}" "$root/sys/bus/pci/devices"
mount -t tmpfs -o mode=755,size=16m,nosuid tmpfs "$root/dev"
{device_nodes}
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=755,size=64m,nosuid,nodev tmpfs "$root/run"
mkdir -m 755 "$root/run/sshd"
mkdir -m 1777 "$root/run/lock"
{_PIVOT_ROOT if pivot_root else _CHROOT}"""

def _cgroup_lines(cgroup_mounts: tuple[tuple[str, str, str], ...]) -> str:
    """Each (mount point, fs type, super options) mounted again in the host, below a tmpfs of its own."""
    if not cgroup_mounts:
        return ""
    lines = ['mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$root/sys/fs/cgroup"']
    lines += [f'mkdir -p "$root"{quote(point)} && mount -t {fstype} -o {quote(options)} {fstype} "$root"{quote(point)}'
              for point, fstype, options in cgroup_mounts]
    return "\n".join(lines) + "\n"


_CHROOT = f"""exec chroot "$root" /usr/bin/env -i PATH={HOST_PATH} LANG=C.UTF-8 \\
    /usr/bin/tini -- /usr/sbin/sshd -D -e
"""

# pivot_root(2)'s own recipe: new and old root on the same directory, then the old one detached.
# Before it, a second proc with nothing mounted over it: the kernel lets a user namespace (an
# unprivileged Apptainer container) mount proc only while some proc mount of the namespace is
# fully visible (fs/namespace.c, mnt_already_visible), and the host's /proc has /proc/sys covered.
_PIVOT_ROOT = f"""mkdir -p "$root/run/provision-lab/proc"
mount -t proc proc "$root/run/provision-lab/proc"
cd "$root"
pivot_root . .
umount -l .
cd /
exec /usr/bin/env -i PATH={HOST_PATH} LANG=C.UTF-8 /usr/bin/tini -- /usr/sbin/sshd -D -e
"""


def nspawn_boot_script(name: str, root: Path, cgroups: list[Path]) -> str:
    """In a fresh mount namespace and the host's own cgroups: boot its systemd with systemd-nspawn."""
    cgroup_procs = " ".join(quote(str(cgroup / "cgroup.procs")) for cgroup in cgroups)
    return f"""#!/bin/sh
# Boot of lab host {name} with systemd (written by provision/lab/boot.py).
set -eu
{detach_others_script(root)}
# nspawn keeps its state in /run; a private tmpfs keeps this machine's /run clean.
mount -t tmpfs -o mode=755 tmpfs /run
# The host's own cgroups: nspawn runs it in payload/ below, docker's containers go below that.
for procs in {cgroup_procs}; do echo $$ > "$procs"; done
# A planted stand-in PCI tree (GPUs) replaces the machine's.
pci=""
[ ! -d {quote(str(root))}/{PCI_STANDIN_DIR} ] || pci="--bind-ro={quote(str(root))}/{PCI_STANDIN_DIR}:/sys/bus/pci/devices"
# SYSTEMD_SECCOMP=0: docker inside needs keyctl, which nspawn's filter refuses.
# shellcheck disable=SC2086
exec env SYSTEMD_SECCOMP=0 systemd-nspawn --boot --register=no --keep-unit $pci \\
    --directory={quote(str(root))} --machine={quote(name)} --hostname={quote(name)} \\
    --capability=CAP_NET_ADMIN --console=read-only --link-journal=no \\
    --resolv-conf=off --timezone=off
"""
