"""What the user sees: a live status per host, a line per change, a summary table, a JSON report."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from provision.results import HostResult, StepResult

STATUS_STYLE = {"ok": "green", "changed": "yellow", "would-change": "yellow", "failed": "red",
                "unreachable": "red", "skipped": "dim", "reboot": "magenta"}


class LiveView:
    """A rich live table of hosts, fed by run events from many threads."""

    def __init__(self, console: Console, hosts: list[str], verbose: bool = False):
        self.console, self.verbose = console, verbose
        self.state = {name: "waiting" for name in hosts}
        self.counts = {name: {"ok": 0, "changed": 0} for name in hosts}
        self.lock = threading.Lock()
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def event(self, host: str, kind: str, payload: Any) -> None:
        with self.lock:
            if kind == "status":
                self.state[host] = str(payload)
            elif kind == "step":
                self._step(host, payload)
            elif kind == "finished":
                self.state[host] = payload.status
            self.live.update(self._table())

    def _step(self, host: str, step: StepResult) -> None:
        self.state[host] = f"{step.role}: {step.task}"
        if step.status == "ok":
            self.counts[host]["ok"] += 1
            if not self.verbose:
                return
        if step.status in ("changed", "would-change"):
            self.counts[host]["changed"] += 1
        style = STATUS_STYLE.get(step.status, "")
        line = Text.assemble((f"{host:<14}", "bold"), (f"{step.status:<13}", style), f"{step.role}: {step.task}")
        if step.detail and step.status not in ("ok",):
            line.append(f"  ({step.detail})", style="dim")
        self.console.print(line)
        if step.diff:
            self.console.print(Text(step.diff.rstrip("\n")), style="cyan")
        for log_line in step.log[-15:] if step.status == "failed" else []:
            self.console.print(Text(f"    {log_line}"), style="red")

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 1))
        for host, state in self.state.items():
            counts = self.counts[host]
            table.add_row(Text(host, style="bold"), Text(f"ok {counts['ok']}", style="green"),
                          Text(f"changed {counts['changed']}", style="yellow"), Text(state, style="dim"))
        return table


def summary_table(results: dict[str, HostResult]) -> Table:
    """One row per host: ok / changed / failed, and the error of a failed host."""
    check = any(r.check_mode for r in results.values())
    table = Table(title="provision: would change (check mode)" if check else "provision: summary")
    for column in ("host", "status", "ok", "would change" if check else "changed", "skipped", "failed", "seconds"):
        table.add_column(column, justify="right" if column not in ("host", "status") else "left")
    for name, result in results.items():
        failed = 1 if result.failed else 0
        table.add_row(name, Text(result.status, style=STATUS_STYLE.get(result.status, "")), str(result.count("ok")),
                      str(result.changed), str(result.count("skipped")), str(failed), f"{result.seconds:.1f}")
    return table


def print_verifications(console: Console, results: dict[str, HostResult]) -> None:
    """One line per verification step (role verify): what was checked and what it said."""
    for result in results.values():
        for step in result.steps:
            if step.role == "verify":
                console.print(Text.assemble((f"{result.host:<14}", "bold"), (f"{step.status:<13}", STATUS_STYLE.get(step.status, "")),
                                            f"verify: {step.task}", (f"  {step.detail}", "dim")))


def print_errors(console: Console, results: dict[str, HostResult]) -> None:
    for result in results.values():
        if result.error:
            console.print(Text(f"{result.host}: {result.error}", style="red"))


def write_json(path: Path, results: dict[str, HostResult]) -> None:
    """The machine-readable report: per host its status, counts, steps and error."""
    report = {"hosts": {name: result.as_dict() for name, result in results.items()},
              "failed": [name for name, result in results.items() if result.failed]}
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
