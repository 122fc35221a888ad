"""Cgroups of this machine given to each host with systemd: its services and containers stay in them."""

import errno
import os
import time
from pathlib import Path

from provision.lab.commands import LabError

LAB_CGROUP = "provision-lab"


def _hierarchies() -> list[tuple[Path, frozenset[str]]]:
    """Each cgroup hierarchy mounted here: its mount point and its controllers (none for v2)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, super_options = tail.split()[:3]
        if fstype == "cgroup2":
            found.append((Path(fields.split()[4]), frozenset()))
        elif fstype == "cgroup":
            found.append((Path(fields.split()[4]), frozenset(super_options.split(","))))
    return found


def hierarchy_mounts() -> tuple[tuple[str, str, str], ...]:
    """(mount point, fs type, super options) of each cgroup hierarchy of this machine, v1 and v2."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, super_options = tail.split()[:3]
        if fstype in ("cgroup", "cgroup2") and fields.split()[4].startswith("/sys/fs/cgroup/"):
            found.append((fields.split()[4], fstype, super_options))
    return tuple(found)


def _own_cgroups() -> dict[frozenset[str], str]:
    """This process's cgroup path in each hierarchy, by that hierarchy's controllers."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[frozenset(controllers.split(",")) - {""}] = path
    return own


def host_cgroups(host: str) -> list[Path]:
    """The host's cgroup in each hierarchy, below this process's own; created, cpusets filled.

    nspawn runs the host in payload/ of the cgroups it starts in, and docker in the host
    puts containers below: each host gets its own, and teardown removes them.
    """
    own = _own_cgroups()
    cgroups = []
    for mount, options in _hierarchies():
        path = next((p for c, p in own.items() if (c <= options if c else not options)), None)
        if path is None or not (mount / "cgroup.procs").exists():
            continue
        parent = mount / path.lstrip("/")
        for level in (parent / LAB_CGROUP, parent / LAB_CGROUP / host):
            level.mkdir(exist_ok=True)
            for cpuset_file in ("cpuset.cpus", "cpuset.mems"):  # v1 cpusets start empty
                if (level / cpuset_file).exists() and not (level / cpuset_file).read_text().strip():
                    (level / cpuset_file).write_text((level.parent / cpuset_file).read_text())
        cgroups.append(parent / LAB_CGROUP / host)
    return cgroups


def lab_cgroups() -> list[Path]:
    """Every LAB_CGROUP directory in every hierarchy (whichever process made it)."""
    found = []
    for mount, _ in _hierarchies():
        for directory, subdirectories, _ in os.walk(mount):
            if LAB_CGROUP in subdirectories:
                found.append(Path(directory) / LAB_CGROUP)
                subdirectories.remove(LAB_CGROUP)
    return found


def _remove_tree(top: Path, timeout: float = 5) -> None:
    """rmdir the cgroup `top` and those below it, retrying while dying processes leave them."""
    deadline = time.monotonic() + timeout
    while top.is_dir():
        for directory, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(directory)
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                    raise
        if top.is_dir():
            if time.monotonic() > deadline:
                raise LabError(f"lab cgroup {top} is still in use after {timeout:g} s")
            time.sleep(0.05)


def remove_host_cgroups(host: str) -> None:
    """Remove the host's cgroups (its processes must be gone)."""
    for lab_cgroup in lab_cgroups():
        _remove_tree(lab_cgroup / host)


def remove_all() -> None:
    """Remove every lab cgroup (all hosts' processes must be gone)."""
    for lab_cgroup in lab_cgroups():
        _remove_tree(lab_cgroup)
