"""What the user sees: a live status per host, a line per change, a summary table, a JSON report."""
from __future__ import annotations

import json
import threading
from collections import Counter, deque
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from provision.results import HostResult, StepResult

STATUS_STYLE = {"ok": "green", "changed": "yellow", "would-change": "yellow", "failed": "red",
                "unreachable": "red", "skipped": "dim", "reboot": "magenta"}


LIVE_ROWS = 12    # hosts the live view names while they run (and failures it names); the rest are counted
SCREENFUL = 40    # rows of the final table and error lines before they are collapsed (the JSON report has all)
FINAL = ("ok", "changed", "failed", "unreachable")


class LiveView:
    """A bounded live view fed by run events from many threads: running and failed hosts by name, counts for the rest.

    An event only updates counters (constant time); the view is drawn at the refresh rate, never per event,
    and its size does not depend on the number of hosts.
    """

    def __init__(self, console: Console, hosts: list[str], verbose: bool = False):
        self.console, self.verbose = console, verbose
        self.total = len(hosts)
        self.active: dict[str, str] = {}  # running host -> what it is doing, in the order they started
        self.counts: dict[str, dict[str, int]] = {}  # running host -> its ok / changed steps so far
        self.finished: Counter = Counter()
        self.failures: deque[tuple[str, str, str]] = deque(maxlen=LIVE_ROWS)  # the latest (host, status, error)
        self.renders = 0  # times the view was drawn (the fleet tests count them)
        self.lock = threading.RLock()
        self.live = Live(console=console, refresh_per_second=8, transient=True, get_renderable=self._table)
        self.renders = 0  # Live drew it once to set up

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def event(self, host: str, kind: str, payload: Any) -> None:
        printed: list[Any] = []
        with self.lock:
            if kind == "status":
                self.active[host] = str(payload)
                self.counts.setdefault(host, {"ok": 0, "changed": 0})
            elif kind == "step":
                printed = self._step(host, payload)
            elif kind == "finished":
                self.active.pop(host, None)
                self.counts.pop(host, None)
                self.finished[payload.status] += 1
                if payload.failed:
                    self.failures.append((host, payload.status, (payload.error or "").strip().split("\n")[0]))
        if printed:  # outside our lock: printing redraws the view, which takes it
            self.console.print(*printed)

    def _step(self, host: str, step: StepResult) -> list[Any]:
        """Count the step; the lines to print for it (changes, diffs, failures; ok steps only when verbose)."""
        self.active[host] = f"{step.role}: {step.task}"
        counts = self.counts.setdefault(host, {"ok": 0, "changed": 0})
        if step.status == "ok":
            counts["ok"] += 1
            if not self.verbose:
                return []
        if step.status in ("changed", "would-change"):
            counts["changed"] += 1
        style = STATUS_STYLE.get(step.status, "")
        line = Text.assemble((f"{host:<14}", "bold"), (f"{step.status:<13}", style), f"{step.role}: {step.task}")
        if step.detail and step.status not in ("ok",):
            line.append(f"  ({step.detail})", style="dim")
        printed: list[Any] = [line]
        if step.diff:
            printed.append(Text(step.diff.rstrip("\n"), style="cyan"))
        for log_line in step.log[-15:] if step.status == "failed" else []:
            printed.append(Text(f"    {log_line}", style="red"))
        return printed

    def _table(self) -> Table:
        with self.lock:
            self.renders += 1
            done = sum(self.finished.values())
            head = [f"running {len(self.active)}", f"waiting {max(0, self.total - done - len(self.active))}"]
            head += [f"{status} {self.finished[status]}" for status in FINAL if self.finished[status]]
            table = Table(box=None, show_header=False, padding=(0, 1), title=f"{' · '.join(head)}  (of {self.total})",
                          title_justify="left", title_style="bold")
            for host, state in list(self.active.items())[:LIVE_ROWS]:
                counts = self.counts.get(host, {"ok": 0, "changed": 0})
                table.add_row(Text(host, style="bold"), Text(f"ok {counts['ok']}", style="green"),
                              Text(f"changed {counts['changed']}", style="yellow"), Text(state, style="dim"))
            if len(self.active) > LIVE_ROWS:
                table.add_row(Text(f"… {len(self.active) - LIVE_ROWS} more running", style="dim"), "", "", "")
            for host, status, error in self.failures:
                table.add_row(Text(host, style="bold"), Text(status, style="red"), "", Text(error[:120], style="red"))
            return table


def summary_table(results: dict[str, HostResult], limit: int = SCREENFUL) -> Table:
    """One row per host (failed first past a screenful, the rest then counted by status); the JSON report has every host."""
    check = any(r.check_mode for r in results.values())
    table = Table(title="provision: would change (check mode)" if check else "provision: summary")
    for column in ("host", "status", "ok", "would change" if check else "changed", "skipped", "failed", "seconds"):
        table.add_column(column, justify="right" if column not in ("host", "status") else "left")
    shown = list(results.values())
    if len(shown) > limit:
        rank = {"failed": 0, "unreachable": 0, "changed": 1}
        shown = sorted(shown, key=lambda r: rank.get(r.status, 2 if not r.changed else 1))[:limit - 1]
    for result in shown:
        failed = 1 if result.failed else 0
        table.add_row(result.host, Text(result.status, style=STATUS_STYLE.get(result.status, "")), str(result.count("ok")),
                      str(result.changed), str(result.count("skipped")), str(failed), f"{result.seconds:.1f}")
    listed = {id(result) for result in shown}
    hidden = [result for result in results.values() if id(result) not in listed]
    by_status: dict[str, list[HostResult]] = {}
    for result in hidden:
        by_status.setdefault(result.status, []).append(result)
    for status, group in by_status.items():
        table.add_row(f"… {len(group)} more", Text(status, style=STATUS_STYLE.get(status, "")),
                      str(sum(r.count("ok") for r in group)), str(sum(r.changed for r in group)),
                      str(sum(r.count("skipped") for r in group)), str(sum(1 for r in group if r.failed)), "")
    if hidden:
        table.caption = f"{len(results)} hosts, {len(hidden)} counted not listed: --json FILE reports every host"
    return table


def print_verifications(console: Console, results: dict[str, HostResult]) -> None:
    """One line per verification step (role verify): what was checked and what it said."""
    for result in results.values():
        for step in result.steps:
            if step.role == "verify":
                console.print(Text.assemble((f"{result.host:<14}", "bold"), (f"{step.status:<13}", STATUS_STYLE.get(step.status, "")),
                                            f"verify: {step.task}", (f"  {step.detail}", "dim")))


def print_errors(console: Console, results: dict[str, HostResult], limit: int = SCREENFUL) -> None:
    """Each failed host's error, up to a screenful; then how many more (the JSON report has them all)."""
    failed = [result for result in results.values() if result.error]
    for result in failed[:limit]:
        console.print(Text(f"{result.host}: {result.error}", style="red"))
    if len(failed) > limit:
        console.print(Text(f"… and {len(failed) - limit} more failed hosts: --json FILE reports every error", style="red"))


def write_json(path: Path, results: dict[str, HostResult]) -> None:
    """The machine-readable report: per host its status, counts, steps and error."""
    report = {"hosts": {name: result.as_dict() for name, result in results.items()},
              "failed": [name for name, result in results.items() if result.failed]}
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
