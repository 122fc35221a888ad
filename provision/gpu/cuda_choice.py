"""CUDA and NGC choices for a host's GPUs and driver branch: the toolkit ceiling and the NGC PyTorch tag."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provision.errors import PreflightError
from provision.gpu.compat import CompatTable, GpuModel, NgcTag, parse_version


@dataclass(frozen=True)
class Choice:
    """One decided setting and why; value None means 'nothing to install or choose'."""

    value: str | None
    reason: str


def _v(text: str) -> tuple[int, ...]:
    return parse_version(text)


def _labels(gpus: list[GpuModel]) -> str:
    return ", ".join(dict.fromkeys(g.architecture.label for g in gpus))


def _distinct(gpus: list[GpuModel]) -> list[GpuModel]:
    return list(dict.fromkeys(gpus))


def choose_cuda_ceiling(gpus: list[GpuModel], branch: int, requested: Any, t: CompatTable) -> Choice:
    arch_max = min((g for g in gpus if g.architecture.cuda_max), default=None,
                   key=lambda g: _v(g.architecture.cuda_max or "0.0"))
    fits = [r.cuda for r in t.cuda_releases
            if (t.min_branch_for_cuda(r.cuda) or 10**6) <= branch
            and (arch_max is None or _v(r.cuda) <= _v(arch_max.architecture.cuda_max or "0.0"))]
    if not fits:
        raise PreflightError(f"no CUDA release in gpu_compat.yml runs on branch {branch} for {_labels(gpus)}; "
                             f"add the missing rows to section 'cuda_releases'")
    ceiling = fits[-1]
    if arch_max and arch_max.architecture.cuda_max == ceiling:
        reason = f"CUDA {ceiling} is the last toolkit that can target {arch_max.sm} ({arch_max.architecture.label})"
    else:
        reason = (f"branch {branch} runs CUDA up to {ceiling} (CUDA {ceiling.split('.')[0]}.x needs branch "
                  f"{t.min_branch_for_cuda(ceiling)} or newer)")
    if requested is None:
        return Choice(ceiling, reason)
    cuda = str(requested)
    if not re.fullmatch(r"\d+\.\d+", cuda):
        raise PreflightError(f"cuda_version {requested!r} is not a CUDA version such as 12.9; "
                             f"use cuda_version: {ceiling}")
    for gpu in _distinct(gpus):
        arch = gpu.architecture
        if arch.cuda_max and _v(cuda) > _v(arch.cuda_max):
            raise PreflightError(f"cuda_version {cuda} cannot target {gpu.describe()}: CUDA {arch.cuda_max} is the "
                                 f"last toolkit for {arch.label}; use cuda_version: {arch.cuda_max}")
        if arch.cuda_min and _v(cuda) < _v(arch.cuda_min):
            raise PreflightError(f"cuda_version {cuda} cannot target {gpu.describe()}: {arch.label} needs CUDA "
                                 f"{arch.cuda_min} or newer; use cuda_version: {ceiling}")
    if _v(cuda) < _v(t.minimum_cuda):
        raise PreflightError(f"cuda_version {cuda} is older than this stack supports (CUDA {t.minimum_cuda} or newer); "
                             f"use cuda_version: {ceiling}")
    need = t.min_branch_for_cuda(cuda)
    if need is None:
        raise PreflightError(f"cuda_version {cuda} is not in gpu_compat.yml (no row in 'cuda_min_driver' for CUDA "
                             f"{cuda.split('.')[0]}.x); use cuda_version: {ceiling}")
    if need > branch:
        raise PreflightError(f"cuda_version {cuda} needs driver branch {need} or newer, but the driver branch is "
                             f"{branch}; use nvidia_driver_branch: {need}, or cuda_version: {ceiling}")
    return Choice(ceiling, f"{reason}; requested cuda_version {cuda} fits")


def newest_ngc_tag(t: CompatTable, ceiling: str | None, floor: str | None) -> NgcTag | None:
    """The newest NGC PyTorch tag built on a CUDA between floor and ceiling (either may be None)."""
    usable = [n for n in t.ngc_pytorch
              if (ceiling is None or _v(n.cuda) <= _v(ceiling)) and (floor is None or _v(n.cuda) >= _v(floor))]
    return usable[-1] if usable else None


def _cuda_floor(gpus: list[GpuModel]) -> str | None:
    floors = [g.architecture.cuda_min for g in gpus if g.architecture.cuda_min]
    return max(floors, key=_v) if floors else None


def choose_ngc(gpus: list[GpuModel], branch: int, ceiling: str, requested: Any, t: CompatTable) -> Choice:
    floor = _cuda_floor(gpus)
    newest = newest_ngc_tag(t, ceiling, floor)
    too_old = [g for g in gpus if _v(g.compute_capability) < _v(t.ngc_min_compute_capability)]
    if too_old:
        gpu = too_old[0]
        why = (f"NGC framework images need compute capability {t.ngc_min_compute_capability} or later, and "
               f"{gpu.describe()} is {gpu.compute_capability}")
        if requested is None:
            return Choice(None, f"no NGC PyTorch tag: {why}")
        raise PreflightError(f"ngc_pytorch_tag {str(requested).removesuffix('-py3')} cannot run on {gpu.describe()}: "
                             f"{why}; use a CUDA {ceiling} base image (nvidia/cuda) with a PyTorch build that "
                             f"still targets {gpu.sm}")
    if requested is None:
        if newest is None:
            return Choice(None, f"no NGC PyTorch tag in gpu_compat.yml is built on CUDA {floor or ''}..{ceiling}")
        return Choice(newest.tag, f"newest NGC PyTorch built on CUDA {ceiling} or older (CUDA {newest.cuda})")
    tag = str(requested).removesuffix("-py3")
    instead = f"ngc_pytorch_tag: {newest.tag}" if newest else "a tag from gpu_compat.yml"
    row = t.ngc_tag(tag)
    if row is None:
        quote = " (YAML read it as a number: quote the tag)" if isinstance(requested, float) else ""
        raise PreflightError(f"ngc_pytorch_tag {requested} is not in gpu_compat.yml{quote}; add a row to section "
                             f"'ngc_pytorch' with its CUDA version from the NGC release notes, or use {instead}")
    for gpu in _distinct(gpus):
        arch = gpu.architecture
        if arch.cuda_max and _v(row.cuda) > _v(arch.cuda_max):
            raise PreflightError(f"ngc_pytorch_tag {tag} cannot run on {gpu.describe()}: it is built on CUDA "
                                 f"{row.cuda}, and CUDA {arch.cuda_max} is the last toolkit for {arch.label}; "
                                 f"{newest.tag if newest else 'no tag'} is the newest NGC PyTorch that runs there; "
                                 f"use {instead}")
        if arch.cuda_min and _v(row.cuda) < _v(arch.cuda_min):
            raise PreflightError(f"ngc_pytorch_tag {tag} cannot run on {gpu.describe()}: it is built on CUDA "
                                 f"{row.cuda}, and {arch.label} needs CUDA {arch.cuda_min} or newer; use {instead}")
    need = t.min_branch_for_cuda(row.cuda) or 0
    if need > branch:
        raise PreflightError(f"ngc_pytorch_tag {tag} is built on CUDA {row.cuda}, which needs driver branch {need} "
                             f"or newer, but the driver branch is {branch}; use nvidia_driver_branch: {need}, "
                             f"or {instead}")
    return Choice(tag, f"requested; built on CUDA {row.cuda}")
