"""invoke userdata-status: follow an instance's user-data run over SSH until it finished or failed."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from provision.connection import Timeouts, open_transport
from provision.errors import ConnectError, HostKeyError
from provision.inventory import Host, Inventory
from provision.userdata import LOG, STATUS

TAIL_LINES = 40
# Prints the status word (pending before the user-data started), and the log's tail once it failed.
STATUS_SCRIPT = f"""read_root() {{ cat "$1" 2> /dev/null || sudo -n cat "$1" 2> /dev/null; }}
status=$(read_root {STATUS}) || status=pending
echo "status ${{status:-pending}}"
case "$status" in failed*) read_root {LOG} | tail -n {TAIL_LINES} ;; esac
"""


@dataclass
class UserDataStatus:
    host: str
    status: str          # pending, running, rebooting, finished, failed [RC|facts]
    log_tail: list[str]

    @property
    def done(self) -> bool:
        return self.status.split(" ")[0] in ("finished", "failed")

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")


def read_status(host: Host, inventory: Inventory, timeouts: Timeouts = Timeouts(connect=10, command=60)) -> UserDataStatus:
    """The user-data status of a host now (one SSH session); ConnectError when it cannot be reached."""
    lines: list[str] = []
    transport = open_transport(host, inventory, False, timeouts)
    try:
        transport.open()
        rc = transport.run("sh -s", STATUS_SCRIPT, lines.append, timeout=timeouts.command)
    finally:
        transport.close()
    if rc != 0 or not lines or not lines[0].startswith("status "):
        raise ConnectError(f"{host.name}: could not read {STATUS} (exit {rc})")
    return UserDataStatus(host.name, lines[0][len("status "):].strip(), lines[1:])


def follow_status(host: Host, inventory: Inventory, say: Callable[[str], None], timeout: float = 3600,
                  interval: float = 10) -> UserDataStatus:
    """Poll the status until finished or failed, saying each change; an unreachable host (a reboot point,
    sshd not up yet) is waited for. A host key that does not match is not waited for: HostKeyError."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            current = read_status(host, inventory)
            shown = current.status
        except HostKeyError:
            raise
        except ConnectError as exc:
            current, shown = None, f"unreachable ({exc})"
        if shown != last:
            say(f"{host.name}: user-data {shown}")
            last = shown
        if current is not None and current.done:
            return current
        if time.monotonic() >= deadline:
            return UserDataStatus(host.name, f"timeout (still {shown} after {timeout:g}s)", [])
        time.sleep(interval)
