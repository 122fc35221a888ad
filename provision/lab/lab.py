"""The Lab: bring real test hosts up on this machine, reach into them, and tear everything down."""

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provision.lab import (aptcache, cgroups, emulation, faults, host, inventory, keys, lock, mounts, network,
                           rootfs, settings)
from provision.lab import registry
from provision.lab.boot import PCI_STANDIN_DIR
from provision.lab.commands import LabError
from provision.lab.host import LabHost, MachineDir
from provision.lab.state import HostRecord, LabState

HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
LOCK_WAIT = 900  # seconds up() and down() wait for another process's lab to be done


def default_state_dir() -> Path:
    """`.lab` in the project root (the checkout holding this package), else in the cwd."""
    project = Path(__file__).resolve().parents[2]
    return (project if (project / "pyproject.toml").is_file() else Path.cwd()) / ".lab"


def _lab_host(name: str, record: HostRecord) -> LabHost:
    return LabHost(name, record.address, record.systemd, record.flavour, record.arch)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it makes network namespaces, mounts and bridges")


class Lab:
    """Real Debian test hosts (sshd, sudo, apt through a cache) in network namespaces here."""

    def __init__(self, state_dir: Path | None = None):
        self.state_dir = (state_dir or default_state_dir()).absolute()
        self.client_key = self.state_dir / "id_ed25519"
        self.inventory_path = self.state_dir / "hosts" / "inventory.yml"
        self.known_hosts_path = self.state_dir / "hosts" / "known_hosts"
        self._state_path = self.state_dir / "state.json"
        self._aptcache_dir = self.state_dir / "aptcache"
        self._machines_dir = self.state_dir / "machines"
        self._registry_dir = self.state_dir / "registry"
        self._holding_lock = False

    # -- what exists ---------------------------------------------------------------------

    def hosts(self) -> list[LabHost]:
        """Every host the lab has made and not torn down, in address order."""
        records = LabState.load(self._state_path).hosts
        made = [_lab_host(name, r) for name, r in records.items()]
        return sorted(made, key=lambda h: h.octet)

    def host(self, name: str) -> LabHost:
        for made in self.hosts():
            if made.name == name:
                return made
        names = ", ".join(made.name for made in self.hosts()) or "none"
        raise LabError(f"the lab has no host {name!r} (hosts: {names})")

    def _machine(self, name: str) -> MachineDir:
        return MachineDir(self._machines_dir / name)

    def rootfs(self, name: str) -> Path:
        """The host's merged root filesystem as seen from this machine."""
        self.host(name)
        return self._machine(name).root

    def is_running(self, name: str) -> bool:
        """Whether anything runs for the host (booting, up, or between reboots)."""
        return bool(network.netns_pids(self.host(name).netns))

    def aptcache_running(self) -> bool:
        return aptcache.is_running(self._aptcache_dir)

    # -- bringing hosts up ----------------------------------------------------------------

    def up(self, names: list[str], systemd: bool = False,
           record_host_keys: bool = True, flavour: str = "", arch: str = "") -> list[LabHost]:
        """Make (or keep) the named hosts running and answering SSH; return them.

        flavour rootfs.APPTAINER_FLAVOUR: Debian sid hosts with the real Apptainer, Slurm and munge.
        arch "arm64": hosts of that architecture on this amd64 machine, run under qemu-user.

        New hosts get the next free addresses and a fresh overlay; hosts already up are
        kept as they are. Rewrites the inventory and known_hosts for all of the lab's hosts.
        Holds the machine-wide lab lock from then until down() or the end of this process.
        """
        _require_root()
        self._hold_lock()
        for name in names:
            if not HOST_NAME.match(name):
                raise LabError(f"lab host name {name!r} is not a short lowercase hostname")
        state = LabState.load(self._state_path)
        if not state.saved_settings:
            state.saved_settings = settings.snapshot()
        base = rootfs.ensure_base(systemd, flavour=flavour, arch=arch)
        if arch:
            emulation.ensure_setuid_emulation(arch)  # sudo inside the host: setuid under qemu-user
        client_public_key = keys.ensure_client_key(self.client_key)
        network.ensure_bridge()
        aptcache.ensure_running(self._aptcache_dir)
        wanted = []
        for name in names:
            record = state.hosts.get(name)
            if record and (record.systemd, record.flavour, record.arch) != (systemd, flavour, arch):
                raise LabError(f"lab host {name} exists with systemd={record.systemd} flavour={record.flavour!r} "
                               f"arch={record.arch!r}, not systemd={systemd} flavour={flavour!r} arch={arch!r}")
            if record and self._is_intact(name):
                made = _lab_host(name, record)
                if not network.netns_pids(made.netns):
                    host.start(made, self._machine(name))
            else:
                made = self._create(state, name, HostRecord("", systemd, "", record_host_keys, flavour, arch),
                                    base, client_public_key)
            wanted.append(made)
        for made in wanted:
            host.wait_for_ssh(made, self._machine(made.name))
        self._write_host_files(state)
        return wanted

    def _is_intact(self, name: str) -> bool:
        """Whether the host's overlay and netns survive (they do not after this machine reboots)."""
        netns = network.netns_name(name)
        return mounts.is_mounted(self._machine(name).root) and Path("/run/netns", netns).exists()

    def _create(self, state: LabState, name: str, wanted: HostRecord, base: Path, client_public_key: str) -> LabHost:
        self._remove_leftovers(name, state.hosts.get(name))
        used = {int(r.address.rsplit(".", 1)[1]) for n, r in state.hosts.items() if n != name}
        free = [o for o in range(network.FIRST_HOST_OCTET, network.LAST_HOST_OCTET + 1) if o not in used]
        if not free:
            raise LabError(f"the lab has no address left for host {name}")
        wanted.address = network.host_address(free[0])
        state.hosts[name] = wanted
        made = _lab_host(name, wanted)
        state.save(self._state_path)  # recorded before anything exists, for down() after a crash
        network.create_host_network(name, made.octet)
        machine = self._machine(name)
        state.hosts[name].host_key = host.create(made, machine, base, client_public_key)
        state.save(self._state_path)
        host.start(made, machine)
        return made

    def _remove_leftovers(self, name: str, record: HostRecord | None) -> None:
        octet = int(record.address.rsplit(".", 1)[1]) if record else None
        network.delete_host_network(name, octet)
        cgroups.remove_host_cgroups(name)
        machine = self._machine(name)
        mounts.unmount_below(machine.path)
        shutil.rmtree(machine.path, ignore_errors=True)

    def _write_host_files(self, state: LabState) -> None:
        state.save(self._state_path)
        made = {name: _lab_host(name, r) for name, r in state.hosts.items()}
        ordered = sorted(made.values(), key=lambda h: h.octet)
        inventory.write_inventory(self.inventory_path, ordered, self.client_key)
        vouched = {made[n]: r.host_key for n, r in state.hosts.items() if r.record_host_key and r.host_key}
        inventory.write_known_hosts(self.known_hosts_path, vouched)

    # -- power --------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """Power the host off (every process killed); its files stay for start()."""
        host.stop(self.host(name))

    def start(self, name: str) -> None:
        """Boot a stopped host on the same files; return once SSH answers."""
        made = self.host(name)
        if not network.netns_pids(made.netns):
            host.start(made, self._machine(name))
        host.wait_for_ssh(made, self._machine(name))

    def wait_for_ssh(self, name: str, timeout: float | None = None) -> None:
        """Return once the host's sshd answers (after a reboot, say)."""
        host.wait_for_ssh(self.host(name), self._machine(name), timeout)

    # -- reaching in ----------------------------------------------------------------------

    def console(self, name: str) -> str:
        """What the host's boots printed on its console so far (EC2's GetConsoleOutput, for the lab)."""
        log = self._machine(name).console_log
        return log.read_text(errors="replace") if log.exists() else ""

    def exec(self, name: str, command: str, check: bool = True,
             input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run `sh -c command` as root inside the host; LabError on failure when check."""
        return host.execute(self.host(name), self._machine(name), command, check, input)

    # -- faults ---------------------------------------------------------------------------

    def cut_link(self, name: str) -> None:
        """Take the host's link down: its connections stall, new ones time out."""
        network.set_link(self.host(name).octet, up=False)

    def restore_link(self, name: str) -> None:
        network.set_link(self.host(name).octet, up=True)

    @contextmanager
    def hold_dpkg_lock(self, name: str) -> Iterator[None]:
        """Hold the host's dpkg locks (as unattended-upgrades would) while the block runs."""
        with faults.dpkg_lock_held(self.rootfs(name), name):
            yield

    # -- tearing down ---------------------------------------------------------------------

    def registry(self, users: dict[str, str]) -> str:
        """Start the lab's container registry (password logins for `users`); returns host:port."""
        _require_root()
        return registry.start(self._registry_dir, users)

    def plant_gpu(self, name: str, devices: list[tuple[str, str, str]]) -> None:
        """A stand-in for GPUs: a PCI device tree the host sees at /sys/bus/pci/devices from its next boot.

        devices: (slot, "vendor:device", class), e.g. ("0000:00:1e.0", "10de:1db1", "0x030200").
        """
        tree = self.rootfs(name) / PCI_STANDIN_DIR
        shutil.rmtree(tree, ignore_errors=True)
        for slot, pci_id, pci_class in devices:
            vendor, device = pci_id.split(":")
            (tree / slot).mkdir(parents=True)
            (tree / slot / "vendor").write_text(f"0x{vendor}\n")
            (tree / slot / "device").write_text(f"0x{device}\n")
            (tree / slot / "class").write_text(f"{pci_class}\n")

    def down(self) -> None:
        """Tear the whole lab down, even after a crash: no netns, mount or process is left.

        Keeps the client key, the base root filesystems and the apt cache.
        """
        _require_root()
        self._hold_lock()
        try:
            self._tear_down()
        finally:
            self._release_lock()

    def _tear_down(self) -> None:
        state = LabState.load(self._state_path)
        network.delete_all()
        self._kill_processes_rooted_in_lab()
        cgroups.remove_all()
        aptcache.stop(self._aptcache_dir)
        registry.stop(self._registry_dir)
        emulation.remove_lab_handlers()
        mounts.unmount_below(self.state_dir)
        left = mounts.mounts_below(self.state_dir)
        if left:
            raise LabError(f"lab teardown: still mounted: {', '.join(map(str, left))}")
        for made in (self._machines_dir, self._aptcache_dir, self.inventory_path.parent):
            shutil.rmtree(made, ignore_errors=True)
        if state.saved_settings:
            settings.restore(state.saved_settings)
        self._state_path.unlink(missing_ok=True)

    def _kill_processes_rooted_in_lab(self) -> None:
        """SIGKILL processes whose root directory is inside state_dir (left outside any netns)."""
        for proc in Path("/proc").iterdir():
            try:
                root = Path(os.readlink(proc / "root")) if proc.name.isdigit() else None
                if root and root.is_relative_to(self.state_dir):
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                continue

    # -- one lab at a time ----------------------------------------------------------------

    @contextmanager
    def exclusive(self, wait: float = 0) -> Iterator[None]:
        """Hold the machine-wide lab lock for the block (up() itself holds it until down())."""
        lock.acquire(wait)
        try:
            yield
        finally:
            lock.release()

    def _hold_lock(self) -> None:
        if not self._holding_lock:
            lock.acquire(LOCK_WAIT)
            self._holding_lock = True

    def _release_lock(self) -> None:
        if self._holding_lock:
            lock.release()
            self._holding_lock = False
