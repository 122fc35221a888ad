"""One lab host: its overlay root, identity, boot, stop, and commands run inside it."""

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from provision.lab import boot, cgroups, keys, mounts, network, rootfs
from provision.lab.commands import LabError, run, stderr_tail

SSH_PORT = 22
BOOT_TIMEOUT = {False: 15.0, True: 60.0}  # seconds until sshd answers, by systemd
EMULATED_SLOWDOWN = 5  # a host of another architecture boots this many times slower (qemu-user)


@dataclass(frozen=True)
class LabHost:
    """A lab host: its name (also its hostname), its address and how it boots."""

    name: str
    address: str
    systemd: bool = False
    flavour: str = ""     # rootfs.APPTAINER_FLAVOUR: Debian sid with Apptainer, booted with pivot_root
    arch: str = ""        # "" for this machine's; "arm64": every program in it runs under qemu-user

    @property
    def octet(self) -> int:
        return int(self.address.rsplit(".", 1)[1])

    @property
    def netns(self) -> str:
        return network.netns_name(self.name)

    @property
    def link(self) -> str:
        """The host-side end of its veth on this machine (cut it to cut the host off)."""
        return network.link_name(self.octet)


@dataclass(frozen=True)
class MachineDir:
    """Where a host lives on this machine: overlay layers and boot files."""

    path: Path

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def root(self) -> Path:
        """The host's merged root filesystem, as seen from this machine."""
        return self.path / "root"

    @property
    def console_log(self) -> Path:
        return self.path / "console.log"


def _write_identity(host: LabHost, root: Path, client_public_key: str) -> None:
    (root / "etc/hostname").write_text(host.name + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n"
                                    "::1\tlocalhost ip6-localhost ip6-loopback\n")
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    uid, gid = rootfs.sudo_user_ids(root)
    for home, owner in ((root / "root", (0, 0)), (root / "home" / rootfs.SUDO_USER, (uid, gid))):
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(client_public_key + "\n")
        (ssh_dir / "authorized_keys").chmod(0o600)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, *owner)


def create(host: LabHost, machine: MachineDir, base: Path, client_public_key: str) -> str:
    """Mount a fresh overlay of `base` and give it the host's identity; return its host key."""
    mounts.mount_overlay(base, machine.upper, machine.work, machine.root)
    _write_identity(host, machine.root, client_public_key)
    return keys.generate_host_key(machine.root, host.name)


def start(host: LabHost, machine: MachineDir) -> None:
    """Write the host's boot scripts, start its supervisor detached in its netns; return at once."""
    docker = host.flavour in rootfs.DOCKER_FLAVOURS  # no systemd to give dockerd its cgroups: the boot does
    own_cgroups = cgroups.host_cgroups(host.name) if docker else []
    supervisor = boot.supervisor_script(host.name, machine.root, machine.path, host.systemd, own_cgroups)
    (machine.path / "supervise.sh").write_text(supervisor)
    if host.systemd:
        boot_script = boot.nspawn_boot_script(host.name, machine.root, cgroups.host_cgroups(host.name))
    else:
        boot_script = boot.tini_boot_script(host.name, machine.root, machine.path, pivot_root=bool(host.flavour),
                                            cgroup_mounts=cgroups.hierarchy_mounts() if docker else ())
    (machine.path / "boot.sh").write_text(boot_script)
    with open(machine.console_log, "ab") as console:
        run_detached = ["setsid", "--fork", "nsenter", f"--net=/run/netns/{host.netns}",
                        "sh", str(machine.path / "supervise.sh")]
        subprocess.run(run_detached, stdin=subprocess.DEVNULL, stdout=console,
                       stderr=subprocess.STDOUT, check=True)


def stop(host: LabHost) -> None:
    """Power the host off: kill its supervisor and every process in its netns."""
    network.kill_netns_processes(host.netns)
    if host.systemd or host.flavour in rootfs.DOCKER_FLAVOURS:
        cgroups.remove_host_cgroups(host.name)


def _ssh_banner(address: str, timeout: float) -> bool:
    try:
        with socket.create_connection((address, SSH_PORT), timeout=timeout) as connection:
            return connection.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(host: LabHost, machine: MachineDir, timeout: float | None = None) -> None:
    """Return once the host's sshd answers with its banner; LabError with its console if not."""
    if timeout is None:
        timeout = BOOT_TIMEOUT[host.systemd] * (EMULATED_SLOWDOWN if host.arch else 1)
    deadline = time.monotonic() + timeout
    while not _ssh_banner(host.address, timeout=1):
        if time.monotonic() > deadline:
            console = machine.console_log.read_text(errors="replace") if machine.console_log.exists() else ""
            raise LabError(f"lab host {host.name}: sshd at {host.address}:{SSH_PORT} did not answer "
                           f"within {timeout:g} s; console:\n{stderr_tail(console, 15)}")
        time.sleep(0.02)


def _pid_namespace_depth(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return 1


def init_pid(host: LabHost, machine: MachineDir) -> int | None:
    """This machine's pid of the host's PID 1 once it runs in the host's root; None if none."""
    own_depth = _pid_namespace_depth("self")
    try:
        root = machine.root.stat()
    except OSError:
        return None
    for pid in network.netns_pids(host.netns):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
            if len(nspid) == own_depth + 1 and nspid[-1] == "1":
                process_root = os.stat(f"/proc/{pid}/root")
                if (process_root.st_dev, process_root.st_ino) == (root.st_dev, root.st_ino):
                    return pid
        except (OSError, StopIteration):
            continue
    return None


def execute(host: LabHost, machine: MachineDir, command: str, check: bool = True,
            input: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `sh -c command` as root in all the host's namespaces and root; output as text."""
    pid = init_pid(host, machine)
    if pid is None:
        raise LabError(f"lab host {host.name} is not running, cannot run: {command}")
    argv = ["nsenter", f"--target={pid}", "--all", "--root", "--wd", "--",
            "/usr/bin/env", "-i", f"PATH={boot.HOST_PATH}", "HOME=/root", "LANG=C.UTF-8",
            "/bin/sh", "-c", command]
    result = run(argv, what=f"lab host {host.name}", input=input, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise LabError(f"lab host {host.name}: `{command}` exited {result.returncode}\n"
                       f"{stderr_tail(result.stderr)}".rstrip())
    return subprocess.CompletedProcess(argv[-3:], result.returncode,
                                       result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))
