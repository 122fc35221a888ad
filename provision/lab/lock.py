"""The machine-wide lab lock: one lab at a time, as the bridge, addresses and names are global."""

import fcntl
import logging
import os
import time
from typing import IO

from provision.lab.commands import LabError
from provision.lab.rootfs import CACHE_DIR

LOCK_PATH = CACHE_DIR / "lab.lock"

log = logging.getLogger(__name__)

# This process's hold on the lock: re-entrant, so nested holders in one process never wait.
_hold: dict = {"file": None, "count": 0}


def _holder(lock: IO[str]) -> str:
    lock.seek(0)
    return lock.read().strip() or "?"


def acquire(wait: float) -> None:
    """Take the lock (or one more hold on it), waiting at most `wait` seconds for another process."""
    if _hold["count"]:
        _hold["count"] += 1
        return
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK_PATH, "a+")
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _holder(lock)
                lock.close()
                raise LabError(f"the lab is in use by process {holder} ({LOCK_PATH}); "
                               f"waited {wait:g} s") from None
            if not told:
                log.warning("waiting for the lab, in use by process %s (%s)", _holder(lock), LOCK_PATH)
                told = True
            time.sleep(0.2)
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    _hold.update(file=lock, count=1)


def release() -> None:
    """Give back one hold; the lock itself goes with the last one (or when the process exits)."""
    if not _hold["count"]:
        return
    _hold["count"] -= 1
    if not _hold["count"]:
        _hold["file"].close()
        _hold["file"] = None
