"""Run a script on an inventory host for the pipeline, streaming its output, failing with its last lines."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from provision.connection import Timeouts, open_transport
from provision.inventory import Inventory, load_inventory
from provision.secrets import Secret, redactor
from provision.errors import RemoteError  # noqa: F401  (defined with the others)


class Remote:
    """One connection to one host, for several scripts."""

    def __init__(self, inventory: Inventory | Path, host: str, accept_new: bool = False):
        self.inventory = inventory if isinstance(inventory, Inventory) else load_inventory(Path(inventory))
        self.host = self.inventory.host(host)
        self.transport = open_transport(self.host, self.inventory, accept_new, Timeouts(command=6 * 3600))
        self.transport.open()

    def run(self, what: str, script: str, on_line: Callable[[str], None] | None = None,
            secrets: list[str] | None = None) -> list[str]:
        """Run `script` with sh; return its output lines; raise RemoteError naming `what` on failure."""
        redact = redactor([Secret("value", s) for s in secrets or []])
        lines: list[str] = []

        def keep(line: str) -> None:
            line = redact(line)
            lines.append(line)
            if on_line:
                on_line(line)

        status = self.transport.run("sh -s", script, keep)
        if status != 0:
            tail = "\n".join((lines + redact(self.transport.last_stderr).splitlines())[-15:])
            raise RemoteError(f"{what} on {self.host.name} failed (exit {status})" + (f":\n{tail}" if tail else ""))
        return lines

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
