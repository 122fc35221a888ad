"""Cgroups of this machine given to hosts with systemd, so that no two hosts manage the same one."""

import errno
import os
import time
from pathlib import Path

from provision.lab.commands import LabError

# The hierarchies a systemd inside a host manages: the cgroup2 root on a unified machine,
# the named systemd hierarchy and the cgroup2 one of a hybrid or legacy machine.
HIERARCHIES = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
LAB_CGROUP = "provision-lab"


def join_own_cgroups_script(host: str) -> str:
    """sh lines moving the running shell into the host's own cgroup in each managed hierarchy."""
    hierarchies = " ".join(str(h) for h in HIERARCHIES)
    return f"""for hierarchy in {hierarchies}; do
    if [ -f "$hierarchy/cgroup.procs" ]; then
        mkdir -p "$hierarchy/{LAB_CGROUP}/{host}"
        echo $$ > "$hierarchy/{LAB_CGROUP}/{host}/cgroup.procs"
    fi
done"""


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
    for hierarchy in HIERARCHIES:
        _remove_tree(hierarchy / LAB_CGROUP / host)


def remove_all() -> None:
    """Remove every lab cgroup (all hosts' processes must be gone)."""
    for hierarchy in HIERARCHIES:
        _remove_tree(hierarchy / LAB_CGROUP)
