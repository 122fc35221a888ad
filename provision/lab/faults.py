"""Faults the lab injects into a host: a dpkg lock held as unattended-upgrades would hold it."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provision.lab.commands import LabError

# apt takes both with fcntl (POSIX) write locks; flock(2) on them does not stop apt.
DPKG_LOCKS = ("var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock")


@contextmanager
def dpkg_lock_held(root: Path, host: str) -> Iterator[None]:
    """Hold POSIX write locks on the dpkg locks under `root` until the block ends."""
    descriptors = []
    try:
        for lock in DPKG_LOCKS:
            descriptor = os.open(root / lock, os.O_RDWR | os.O_CREAT, 0o640)
            descriptors.append(descriptor)
            try:
                fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise LabError(f"lab host {host}: /{lock} is already locked ({exc.strerror})") from exc
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)  # closing releases the process's POSIX locks on the file
