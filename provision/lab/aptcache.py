"""The hosts' way to Debian packages: an apt-cacher-ng of the lab's own on the bridge address."""

import os
import signal
import socket
import time
from pathlib import Path

from provision.lab import mirror, network, rootfs
from provision.lab.commands import LabError, run

PORT = 3142
PROXY_URL = f"http://{network.BRIDGE_ADDRESS}:{PORT}"
CACHE_DIR = rootfs.CACHE_DIR / "apt-cacher-ng"  # outside state_dir: survives teardown


CONFIG_MARK = "# apt-cacher-ng of the provision lab (written by provision/lab/aptcache.py)."


def config_text(state: Path) -> str:
    """acng.conf for the lab: its own dirs, the bridge address, Debian remapped to our mirror."""
    lines = [
        CONFIG_MARK,
        f"CacheDir: {CACHE_DIR}",
        f"LogDir: {state / 'log'}",
        f"PidFile: {state / 'pid'}",
        f"SocketPath: {state / 'socket'}",
        "SupportDir: /usr/lib/apt-cacher-ng",
        f"Port: {PORT}",
        f"BindAddress: {network.BRIDGE_ADDRESS}",
        f"Remap-debrep: file:deb_mirror*.gz /debian ; {mirror.debian_mirror(rootfs.SUITE)}/",
        "ReportPage: acng-report.html",
        "ExThreshold: 4",
    ]
    upstream_proxy = mirror.apt_option("Acquire::http::Proxy")
    if upstream_proxy and upstream_proxy.upper() != "DIRECT":
        lines.append(f"Proxy: {upstream_proxy}")  # this machine reaches its mirror through it
    return "\n".join(lines) + "\n"


def _pid(state: Path) -> int | None:
    """The pid of the lab's apt-cacher-ng from its pid file, if that process still runs."""
    try:
        pid = int((state / "pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"apt-cacher-ng" in cmdline else None


def _stray_pids(state: Path | None) -> list[int]:
    """apt-cacher-ng processes started with this lab's config dir (pid file lost or not).

    With state None: those of any provision lab (another checkout's), found by their config.
    """
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not (proc.name.isdigit() and cmdline[0].endswith(b"apt-cacher-ng")):
            continue
        if state is not None and str(state).encode() in cmdline:
            pids.append(int(proc.name))
        elif state is None and b"-c" in cmdline and _is_lab_config(cmdline[cmdline.index(b"-c") + 1:][:1]):
            pids.append(int(proc.name))
    return pids


def _is_lab_config(argument: list[bytes]) -> bool:
    try:
        return CONFIG_MARK in (Path(argument[0].decode()) / "acng.conf").read_text()
    except (OSError, IndexError, UnicodeDecodeError):
        return False


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, whose parent has not reaped it yet, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _answers() -> bool:
    try:
        socket.create_connection((network.BRIDGE_ADDRESS, PORT), timeout=1).close()
        return True
    except OSError:
        return False


def is_running(state: Path) -> bool:
    return _pid(state) is not None


def ensure_running(state: Path, timeout: float = 10) -> None:
    """Start the lab's apt-cacher-ng unless it runs; return once it accepts connections."""
    if is_running(state) and _answers():
        return
    if _answers():
        # The lab is one per machine: another checkout's lab cache gives way to this one.
        _terminate(_stray_pids(None), timeout)
    if _answers():
        raise LabError(f"something else listens on {network.BRIDGE_ADDRESS}:{PORT}; "
                       "stop it (a system apt-cacher-ng?) so the lab can run its own")
    (state / "log").mkdir(parents=True, exist_ok=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (state / "acng.conf").write_text(config_text(state))
    run(["apt-cacher-ng", "-c", str(state)], what="starting the lab's apt-cacher-ng")
    deadline = time.monotonic() + timeout
    while not _answers():
        if time.monotonic() > deadline:
            raise LabError(f"the lab's apt-cacher-ng did not listen on {PROXY_URL} within "
                           f"{timeout:g} s; see {state / 'log'}")
        time.sleep(0.02)


def stop(state: Path, timeout: float = 10) -> None:
    """Stop the lab's apt-cacher-ng (found by pid file or config dir); nothing if not running."""
    _terminate(set(_stray_pids(state)) | ({_pid(state)} - {None}), timeout)
    (state / "pid").unlink(missing_ok=True)


def _terminate(pids, timeout: float) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        time.sleep(0.02)
