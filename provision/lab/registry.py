"""A container registry for the lab (Debian's docker-registry) with password logins, on the bridge."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from provision.lab.commands import LabError
from provision.lab.network import BRIDGE_ADDRESS

REGISTRY_PORT = 5000


def _config(state: Path) -> str:
    return f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {state / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: {BRIDGE_ADDRESS}:{REGISTRY_PORT}
auth:
  htpasswd: {{realm: provision-lab, path: {state / 'htpasswd'}}}
"""


def _answers(timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((BRIDGE_ADDRESS, REGISTRY_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def start(state: Path, users: dict[str, str]) -> str:
    """Run the registry with these users (bcrypt via htpasswd, passwords on stdin); return host:port."""
    stop(state)
    if _answers():  # the lab is one per machine: another checkout's lab registry gives way
        for pid in _other_lab_registries():
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
    state.mkdir(parents=True, exist_ok=True)
    (state / "htpasswd").unlink(missing_ok=True)
    for user, password in users.items():
        create = ["-c"] if not (state / "htpasswd").exists() else []
        run = subprocess.run(["htpasswd", *create, "-B", "-i", str(state / "htpasswd"), user],
                             input=password, capture_output=True, text=True)
        if run.returncode != 0:
            raise LabError(f"lab registry: htpasswd for {user} failed: {run.stderr.strip()}")
    (state / "config.yml").write_text(_config(state))
    log = open(state / "registry.log", "ab")
    process = subprocess.Popen(["docker-registry", "serve", str(state / "config.yml")], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    (state / "pid").write_text(str(process.pid))
    deadline = time.monotonic() + 10
    while not _answers():
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"lab registry did not start; see {state / 'registry.log'}")
        time.sleep(0.1)
    return f"{BRIDGE_ADDRESS}:{REGISTRY_PORT}"


def _other_lab_registries() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if proc.name.isdigit() and cmdline[0].endswith(b"docker-registry") and len(cmdline) > 2 \
                    and "realm: provision-lab" in Path(cmdline[2].decode()).read_text():
                pids.append(int(proc.name))
        except (OSError, UnicodeDecodeError):
            continue
    return pids


def stop(state: Path) -> None:
    """Stop the lab's registry if it runs (its data is kept)."""
    pid_file = state / "pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text())
        if b"docker-registry" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
    except (OSError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)
