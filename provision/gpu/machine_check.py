"""A GPU check for the machine this runs on: facts, preflight, nvidia-smi read both ways, and a check-mode run.

`invoke gpucheck` on a machine with an NVIDIA GPU: every part of the tool that reads a GPU, run
against the real one through the local transport, with a report line per check. `--save DIR`
keeps nvidia-smi's raw outputs, to replace the test fixtures that are not real captures.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from provision.errors import ProvisionError
from provision.gpu.compat import CompatTable, table
from provision.gpu.found import bus_key
from provision.gpu.nvidia_smi import NVIDIA_SMI_QUERY_ARGS, SmiFailure, SmiReport, parse_query, parse_table

BUILDER_ROLES = ("base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer",
                 "ngc_login", "verify")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None            # None: skipped
    detail: str


def run_command(args: list[str]) -> str:
    """stdout and stderr of a local command ('' when it cannot start)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{args[0]}: {exc}"
    return done.stdout + done.stderr


def compare_smi(facts: dict[str, Any], report: SmiReport | SmiFailure, t: CompatTable | None = None) -> list[Check]:
    """nvidia-smi's GPUs against sysfs's and the table: same count, each PCI id known, same compute capability."""
    t = t or table()
    if isinstance(report, SmiFailure):
        return [Check("nvidia-smi query", False, str(report))]
    checks = [Check("nvidia-smi query", True, f"driver {report.driver_version}, {len(report.gpus)} GPU(s)")]
    by_bus = {bus_key(d["slot"]): d["pci_id"] for d in facts.get("gpus") or [] if d.get("slot")}
    if len(by_bus) != len(report.gpus):
        checks.append(Check("GPU count", False, f"sysfs shows {len(by_bus)} NVIDIA display device(s), "
                                                f"nvidia-smi {len(report.gpus)}"))
    for gpu in report.gpus:
        pci_id = by_bus.get(bus_key(gpu.bus_id or ""))
        row = t.gpus.get(pci_id or "")
        label = f"GPU {gpu.index} {gpu.name}"
        if pci_id is None:
            checks.append(Check(label, False, f"bus {gpu.bus_id} is not among the facts' PCI devices"))
        elif row is None:
            checks.append(Check(label, False, f"{pci_id} is not in gpu_compat.yml: add {{pci_id: \"{pci_id}\", "
                                              f"model: \"{gpu.name}\", compute_capability: \"{gpu.compute_capability}\"}}"))
        elif gpu.compute_capability and gpu.compute_capability != row.compute_capability:
            checks.append(Check(label, False, f"{pci_id}: nvidia-smi says compute capability {gpu.compute_capability}, "
                                              f"gpu_compat.yml {row.compute_capability}: correct the row"))
        else:
            checks.append(Check(label, True, f"{pci_id} = {row.describe()}"))
    return checks


def smi_checks(facts: dict[str, Any], run: Callable[[list[str]], str] = run_command,
               save: Path | None = None) -> list[Check]:
    """Run nvidia-smi's query and table here and read both with the parsers; save raw outputs when asked."""
    if shutil.which("nvidia-smi") is None and run is run_command:
        return [Check("nvidia-smi", None, "not installed here: nothing to read")]
    query, plain = run(list(NVIDIA_SMI_QUERY_ARGS)), run(["nvidia-smi"])
    if save:
        save.mkdir(parents=True, exist_ok=True)
        (save / "query.csv").write_text(query)
        (save / "table.txt").write_text(plain)
    checks = compare_smi(facts, parse_query(query))
    shown = parse_table(plain)
    if isinstance(shown, SmiFailure):
        checks.append(Check("nvidia-smi table", False, str(shown)))
    else:
        checks.append(Check("nvidia-smi table", True, f"driver {shown.driver_version}, CUDA {shown.cuda_version}, "
                                                      f"{len(shown.gpus)} GPU(s)"))
    return checks


def local_inventory(directory: Path, with_ngc_key: bool) -> Path:
    key = "\n      ngc_login_api_key: {secret_env: NGC_API_KEY}" if with_ngc_key else ""
    (directory / "inventory.yml").write_text(f"all:\n  hosts:\n    here:\n      connection: local{key}\n")
    return directory


def gpu_check(console: Console, roles: list[str], extra: dict[str, Any], save: Path | None = None,
              json_path: str | None = None) -> list[Check]:
    """Facts, preflight, nvidia-smi and a check-mode run of `roles` on this machine; prints the report."""
    from provision import cli
    from provision.connection import Timeouts
    from provision.runner import RunOptions

    checks: list[Check] = []
    with tempfile.TemporaryDirectory() as tmp:
        inventory = local_inventory(Path(tmp), "ngc_login" in roles)
        facts = cli.facts(inventory, "here", False, Timeouts())
        checks.append(Check("facts", True, f"{facts.get('os_id')} {facts.get('os_version_id')} {facts.get('arch')}, "
                                           f"kernel {facts.get('kernel')}, {len(facts['gpus'])} NVIDIA PCI device(s)"))
        try:
            _, decision = cli.preflight(inventory, "here", extra, False, Timeouts())
            checks.append(Check("preflight", True, f"{decision.gpu_summary}; branch {decision.driver_branch.value}, "
                                                   f"{decision.driver_flavour.value}, CUDA ceiling "
                                                   f"{decision.cuda_ceiling.value}, NGC {decision.ngc_pytorch_tag.value}"))
            checks += [Check("preflight warning", False, w) for w in decision.warnings]
        except ProvisionError as exc:
            checks.append(Check("preflight", False, str(exc)))
        checks += smi_checks(facts, save=save)
        try:
            results = cli.provision(inventory, "here", None, ",".join(roles), RunOptions(check=True, extra=extra),
                                    json_path, console)
            result = results["here"]
            checks.append(Check("check-mode run", not result.failed,
                                f"{result.status}: {result.changed} step(s) would change, {', '.join(roles)}"))
        except ProvisionError as exc:
            checks.append(Check("check-mode run", False, str(exc)))
    console.print(report_table(checks))
    return checks


def report_table(checks: list[Check]) -> Table:
    grid = Table(title="GPU check of this machine")
    grid.add_column("Check", style="bold")
    grid.add_column("Result")
    grid.add_column("Detail", overflow="fold")
    for check in checks:
        grid.add_row(check.name, {True: "[green]ok[/]", False: "[red]FAILED[/]", None: "skipped"}[check.ok], check.detail)
    return grid
