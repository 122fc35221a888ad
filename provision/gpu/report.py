"""The preflight decision as a rich table, the way `invoke preflight --host H` prints it."""
from __future__ import annotations

from rich.table import Table

from provision.gpu.preflight import Decision


def format_decision(decision: Decision, title: str = "GPU preflight") -> Table:
    """One row per setting (GPUs, driver route, branch, flavour, CUDA ceiling, NGC PyTorch tag) with its reason."""
    grid = Table(title=title)
    grid.add_column("Setting", style="bold")
    grid.add_column("Choice")
    grid.add_column("Reason", overflow="fold")
    grid.add_row("GPUs", decision.gpu_summary, decision.gpu_reason)
    for label, choice in (("Driver route", decision.driver_route),
                          ("Driver branch", decision.driver_branch),
                          ("Driver flavour", decision.driver_flavour),
                          ("CUDA ceiling", decision.cuda_ceiling),
                          ("NGC PyTorch tag", decision.ngc_pytorch_tag)):
        grid.add_row(label, choice.value if choice.value is not None else "-", choice.reason)
    for warning in decision.warnings:
        grid.add_row("Warning", "[yellow]check[/]", warning)
    return grid
