"""Preflight: from a host's GPU facts and the role's requests, the driver and CUDA choices that can work.

Every rule reads gpu_compat.yml (provision/gpu/compat.py); this module only combines the rows.
A combination that cannot work raises PreflightError saying what was asked, for which GPU, why
it cannot work and what to choose instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provision.gpu.compat import CompatTable, GpuModel, NgcTag, parse_version, table
from provision.errors import PreflightError  # noqa: F401  (defined with the others)

ROUTES = ("ubuntu-drivers", "cuda-repo")
FLAVOURS = ("open", "proprietary")


@dataclass(frozen=True)
class Choice:
    """One decided setting and why; value None means 'nothing to install or choose'."""

    value: str | None
    reason: str


@dataclass(frozen=True)
class FoundGpu:
    slot: str | None           # PCI slot, None when known from the instance type only
    pci_id: str
    model: str
    architecture: str          # label: "Volta"
    compute_capability: str    # "7.0"

    def describe(self) -> str:
        return f"{self.model} ({self.architecture}, sm_{self.compute_capability.replace('.', '')})"


@dataclass(frozen=True)
class Decision:
    """What preflight decided for one host, each setting with its reason."""

    gpus: tuple[FoundGpu, ...]
    gpu_reason: str
    driver_route: Choice
    driver_branch: Choice
    driver_flavour: Choice
    cuda_ceiling: Choice
    ngc_pytorch_tag: Choice

    @property
    def needs_driver(self) -> bool:
        return bool(self.gpus)

    @property
    def gpu_summary(self) -> str:
        """'1x Tesla V100-SXM2-16GB (Volta, sm_70)', or 'none'."""
        counts: dict[str, int] = {}
        for gpu in self.gpus:
            counts[gpu.describe()] = counts.get(gpu.describe(), 0) + 1
        return ", ".join(f"{n}x {name}" for name, n in counts.items()) or "none"


def _v(text: str) -> tuple[int, ...]:
    return parse_version(text)


def _distinct(gpus: list[GpuModel]) -> list[GpuModel]:
    return list(dict.fromkeys(gpus))


def _labels(gpus: list[GpuModel]) -> str:
    return ", ".join(dict.fromkeys(g.architecture.label for g in gpus))


def _gpus_from_facts(facts: dict[str, Any], t: CompatTable) -> tuple[list[tuple[str | None, GpuModel]], str]:
    """The NVIDIA GPUs on the PCI bus, else those of the declared EC2 instance type."""
    devices = [d for d in facts.get("gpus") or []
               if str(d.get("pci_id", "")).lower().startswith("10de:")
               and str(d.get("class", "0x03")).startswith("0x03")]
    if devices:
        found = []
        for device in devices:
            pci_id = str(device["pci_id"]).lower()
            model = t.gpus.get(pci_id)
            if model is None:
                raise PreflightError(
                    f"GPU {pci_id} at {device.get('slot', '?')} is not in gpu_compat.yml, so preflight cannot "
                    f"tell its architecture; add a row to section 'gpus' (pci_id, model, architecture, "
                    f"compute_capability, source) from NVIDIA's list of supported GPUs")
            found.append((device.get("slot"), model))
        return found, f"{len(found)} NVIDIA GPU(s) on the PCI bus"
    instance_type = facts.get("instance_type")
    if instance_type:
        row = t.instances.get(instance_type)
        if row is None:
            return [], f"instance type {instance_type} is not in gpu_compat.yml's EC2 table: no NVIDIA GPU assumed"
        return [(None, row.gpu)] * row.count, f"instance type {instance_type} has {row.count}x {row.gpu.model}"
    return [], "no NVIDIA GPU on the PCI bus (no vendor 10de display-class device)"


def _check_stack(gpus: list[GpuModel], t: CompatTable) -> None:
    for gpu in gpus:
        arch = gpu.architecture
        if arch.cuda_max and _v(arch.cuda_max) < _v(t.minimum_cuda):
            raise PreflightError(
                f"{gpu.describe()} cannot run this stack: {arch.label} support ends with driver branch "
                f"{arch.last_branch} and CUDA {arch.cuda_max}, and this stack needs CUDA {t.minimum_cuda} or newer; "
                f"keep this host on nvidia_driver_branch {arch.last_branch} with CUDA {arch.cuda_max.split('.')[0]}.x "
                f"images outside this tool, or use a newer GPU")


def _branch_floor(gpus: list[GpuModel], t: CompatTable) -> tuple[GpuModel, int] | None:
    """The GPU needing the newest branch to start with (Blackwell: the branch of CUDA 12.8), if any."""
    floors = []
    for gpu in gpus:
        if gpu.architecture.cuda_min:
            release = t.cuda_release(gpu.architecture.cuda_min)
            floors.append((gpu, release.branch if release else t.min_branch_for_cuda(gpu.architecture.cuda_min)))
    return max(floors, key=lambda pair: pair[1]) if floors else None


def _choose_branch(gpus: list[GpuModel], requested: Any, t: CompatTable) -> tuple[int, Choice]:
    limited = [(g, g.architecture.last_branch) for g in gpus if g.architecture.last_branch is not None]
    if limited:
        oldest_gpu, auto = min(limited, key=lambda pair: pair[1])
        auto_reason = f"{oldest_gpu.architecture.label} support ends with branch {auto}"
    else:
        auto = t.current_branch
        auto_reason = f"{_labels(gpus)} supported by current branches; newest known is {auto}"
    if requested is None:
        return auto, Choice(str(auto), auto_reason)
    if not re.fullmatch(r"\d{3}", str(requested)):
        raise PreflightError(f"nvidia_driver_branch {requested!r} is not a driver branch such as 580; "
                             f"use nvidia_driver_branch: {auto}")
    branch = int(requested)
    for gpu, last in limited:
        if branch > last:
            raise PreflightError(f"nvidia_driver_branch {branch} cannot drive {gpu.describe()}: "
                                 f"{gpu.architecture.label} support ends with branch {last}; "
                                 f"use nvidia_driver_branch: {last}")
    floor = _branch_floor(gpus, t)
    if floor and branch < floor[1]:
        gpu = floor[0]
        raise PreflightError(f"nvidia_driver_branch {branch} cannot drive {gpu.describe()}: {gpu.architecture.label} "
                             f"needs CUDA {gpu.architecture.cuda_min} or newer, first shipped with branch {floor[1]}; "
                             f"use nvidia_driver_branch: {auto}")
    stack_min = t.min_branch_for_cuda(t.minimum_cuda)
    if stack_min and branch < stack_min:
        raise PreflightError(f"nvidia_driver_branch {branch} is too old for this stack: CUDA {t.minimum_cuda} needs "
                             f"branch {stack_min} or newer; use nvidia_driver_branch: {auto}")
    return branch, Choice(str(branch), f"requested; {auto_reason}")


def _choose_flavour(gpus: list[GpuModel], requested: Any) -> Choice:
    no_open = [g for g in gpus if g.architecture.open_modules == "no"]
    need_open = [g for g in gpus if g.architecture.open_modules == "required"]
    if no_open and need_open:
        raise PreflightError(
            f"no driver flavour can drive both {need_open[0].describe()} and {no_open[0].describe()}: "
            f"{need_open[0].architecture.label} requires the open kernel modules, which do not support "
            f"{no_open[0].architecture.label}; put these GPUs on separate hosts")
    mixed = len({g.architecture.name for g in gpus}) > 1
    if requested is None:
        if need_open:
            return Choice("open", f"{need_open[0].architecture.label} requires the open kernel modules")
        if no_open:
            why = f"{no_open[0].architecture.label} has no open kernel module support"
            return Choice("proprietary", f"{why} (mixed host: {_labels(gpus)})" if mixed else why)
        if mixed:
            return Choice("proprietary", f"mixed architectures on one host ({_labels(gpus)}): proprietary modules")
        return Choice("open", f"{_labels(gpus)} supports the open kernel modules, "
                              f"NVIDIA's recommendation from Turing on")
    if requested not in FLAVOURS:
        raise PreflightError(f"nvidia_driver_flavour {requested!r} is not one of {', '.join(FLAVOURS)}; "
                             f"use nvidia_driver_flavour: {_choose_flavour(gpus, None).value}")
    if requested == "open" and no_open:
        raise PreflightError(f"nvidia_driver_flavour open cannot drive {no_open[0].describe()}: the open kernel "
                             f"modules need Turing or newer; use nvidia_driver_flavour: proprietary")
    if requested == "proprietary" and need_open:
        raise PreflightError(f"nvidia_driver_flavour proprietary cannot drive {need_open[0].describe()}: "
                             f"{need_open[0].architecture.label} requires the open kernel modules; "
                             f"use nvidia_driver_flavour: open")
    return Choice(requested, "requested")


def _on_ubuntu(facts: dict[str, Any]) -> bool:
    return facts.get("os_id") in (None, "", "ubuntu")


def _os_name(facts: dict[str, Any]) -> str:
    return f"{str(facts.get('os_id')).capitalize()} {facts.get('os_version_id', '')}".strip()


def _check_vendor_sources(facts: dict[str, Any], request: dict[str, Any]) -> None:
    """Refuse what the vendors publish for Ubuntu only, on another distribution, saying what to use."""
    if not _on_ubuntu(facts) and request.get("apptainer_source") == "ppa":
        raise PreflightError(f"apptainer_source ppa cannot work on {_os_name(facts)}: Apptainer's PPA serves "
                             f"Ubuntu releases only; set apptainer_source: deb (Apptainer's release .deb)")


def _choose_route(facts: dict[str, Any], requested: Any) -> Choice:
    if not _on_ubuntu(facts) and requested in (None, "ubuntu-drivers"):
        raise PreflightError(f"nvidia_driver_route ubuntu-drivers cannot work on {_os_name(facts)}: ubuntu-drivers "
                             f"and its prebuilt modules come from Ubuntu's archive only; set nvidia_driver_route: "
                             f"cuda-repo (NVIDIA's {facts.get('os_id')}{str(facts.get('os_version_id', '')).replace('.', '')} "
                             f"repository)")
    if requested is None:
        return Choice("ubuntu-drivers", "default: signed prebuilt modules from the Ubuntu archive (Secure Boot safe)")
    if requested not in ROUTES:
        raise PreflightError(f"nvidia_driver_route {requested!r} is not one of {', '.join(ROUTES)}; "
                             f"use nvidia_driver_route: ubuntu-drivers")
    if requested == "ubuntu-drivers":
        return Choice(requested, "requested: signed prebuilt modules from the Ubuntu archive")
    secure_boot = facts.get("secure_boot", "unknown")
    if secure_boot == "enabled":
        raise PreflightError("nvidia_driver_route cuda-repo cannot work with Secure Boot enabled: its DKMS-built "
                             "kernel modules are not signed by a key the kernel trusts and would be rejected; "
                             "use nvidia_driver_route: ubuntu-drivers")
    if secure_boot == "disabled":
        return Choice(requested, "requested; Secure Boot is disabled, so DKMS-built modules load")
    return Choice(requested, "requested; Secure Boot state unknown: DKMS-built modules are rejected if it is on")


def _cuda_ceiling(gpus: list[GpuModel], branch: int, requested: Any, t: CompatTable) -> Choice:
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


def _choose_ngc(gpus: list[GpuModel], branch: int, ceiling: str, requested: Any, t: CompatTable) -> Choice:
    floor = _cuda_floor(gpus)
    newest = newest_ngc_tag(t, ceiling, floor)
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


_DRIVER_DEMANDS = ("nvidia_driver_branch", "nvidia_driver_flavour")


def decide(facts: dict[str, Any], request: dict[str, Any]) -> Decision:
    """Decide route, branch, flavour, CUDA ceiling and NGC tag; raise PreflightError if nothing can work."""
    t = table()
    found, gpu_reason = _gpus_from_facts(facts, t)
    if found:
        _choose_route(facts, request.get("nvidia_driver_route"))  # its refusal comes first
    _check_vendor_sources(facts, request)
    if not found:
        demands = [f"{key} {request[key]}" for key in _DRIVER_DEMANDS if request.get(key) is not None]
        if demands:
            raise PreflightError(f"{' and '.join(demands)} requested, but {gpu_reason}; remove "
                                 f"{', '.join(d.split()[0] for d in demands)} or check that the GPU is attached")
        none = Choice(None, "no NVIDIA GPU: no driver to install")
        tag = request.get("ngc_pytorch_tag")
        newest = newest_ngc_tag(t, None, None)
        ngc = (Choice(str(tag), "requested; no GPU here to check it against") if tag else
               Choice(newest.tag if newest else None, "no GPU here to limit it: newest in gpu_compat.yml"))
        return Decision((), gpu_reason, none, none, none, Choice(None, "no GPU here to limit CUDA"), ngc)
    gpus = [model for _, model in found]
    _check_stack(_distinct(gpus), t)
    branch, branch_choice = _choose_branch(_distinct(gpus), request.get("nvidia_driver_branch"), t)
    flavour = _choose_flavour(_distinct(gpus), request.get("nvidia_driver_flavour"))
    route = _choose_route(facts, request.get("nvidia_driver_route"))
    ceiling = _cuda_ceiling(_distinct(gpus), branch, request.get("cuda_version"), t)
    ngc = _choose_ngc(_distinct(gpus), branch, ceiling.value or "", request.get("ngc_pytorch_tag"), t)
    found_gpus = tuple(FoundGpu(slot, m.pci_id, m.model, m.architecture.label, m.compute_capability)
                       for slot, m in found)
    return Decision(found_gpus, gpu_reason, route, branch_choice, flavour, ceiling, ngc)
