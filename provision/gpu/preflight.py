"""Preflight: from a host's GPU facts and the role's requests, the driver and CUDA choices that can work.

Every rule reads gpu_compat.yml (provision/gpu/compat.py); this module only combines the rows.
A combination that cannot work raises PreflightError saying what was asked, for which GPU, why
it cannot work and what to choose instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provision.gpu.compat import CompatTable, GpuModel, UbuntuRelease, parse_version, table
from provision.gpu.cuda_choice import Choice, choose_cuda_ceiling, choose_ngc, newest_ngc_tag
from provision.gpu.found import check_cpu_arch, gpus_from_facts
from provision.errors import PreflightError  # noqa: F401  (defined with the others)

ROUTES = ("ubuntu-drivers", "cuda-repo")
FLAVOURS = ("open", "proprietary")


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
    warnings: tuple[str, ...] = ()
    ubuntu_driver: str | None = None     # ubuntu-drivers name: "580-server", "595-server-open"
    cuda_repo_key: str | None = None     # the key file of NVIDIA's CUDA repository for this release

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
    """The GPU needing the newest branch to start with, and that branch: its own first driver
    (B300: 580.82.07, GB10: 590.48.01), else the driver of its architecture's first CUDA (Blackwell: 12.8)."""
    floors = []
    for gpu in gpus:
        if gpu.min_branch:
            floors.append((gpu, gpu.min_branch))
        elif gpu.architecture.cuda_min:
            release = t.cuda_release(gpu.architecture.cuda_min)
            floors.append((gpu, (release.branch if release else None) or t.min_branch_for_cuda(gpu.architecture.cuda_min)))
    return max(floors, key=lambda pair: pair[1]) if floors else None


def _floor_why(gpu: GpuModel, branch: int) -> str:
    if gpu.min_driver:
        return f"it needs driver {gpu.min_driver} or newer (branch {branch})"
    return (f"{gpu.architecture.label} needs CUDA {gpu.architecture.cuda_min} or newer, "
            f"first shipped with branch {branch}")


def _available(branch: int, route: str, release: UbuntuRelease | None) -> bool:
    if release is None:
        return True
    if route == "ubuntu-drivers":
        return release.driver_package(branch) is not None
    return release.cuda_repo is not None


def _auto_branch(gpus: list[GpuModel], route: str, release: UbuntuRelease | None, t: CompatTable
                 ) -> tuple[int, str]:
    limited = [(g, g.architecture.last_branch) for g in gpus if g.architecture.last_branch is not None]
    floor = _branch_floor(gpus, t)
    if limited:
        oldest_gpu, ceiling = min(limited, key=lambda pair: pair[1])
        if floor and floor[1] > ceiling:
            raise PreflightError(
                f"no driver branch can drive both {floor[0].describe()} and {oldest_gpu.describe()}: "
                f"{_floor_why(*floor)}, and {oldest_gpu.architecture.label} support ends with branch {ceiling}; "
                f"put these GPUs on separate hosts")
        return ceiling, f"{oldest_gpu.architecture.label} support ends with branch {ceiling}"
    low = floor[1] if floor else 0
    candidates = [b for b, row in t.branches.items() if row.designation in ("long-term", "production")
                  and t.supported(b) and b >= low and _available(b, route, release)]
    if not candidates:
        where = f" in Ubuntu {release.version}'s archive" if release and route == "ubuntu-drivers" else ""
        raise PreflightError(f"no supported long-term or production driver branch{where} drives {_labels(gpus)}"
                             + (f" ({_floor_why(*floor)})" if floor else "")
                             + "; add the branch to gpu_compat.yml or use nvidia_driver_route: cuda-repo")
    auto = max(candidates)
    row = t.branches[auto]
    where = f" in Ubuntu {release.version}'s archive" if release and route == "ubuntu-drivers" else ""
    return auto, (f"{_labels(gpus)} supported by current branches; {auto} is the newest {row.designation} branch{where}"
                  f" (end of life {row.end_of_life})")


def _choose_branch(gpus: list[GpuModel], requested: Any, route: str, release: UbuntuRelease | None,
                   t: CompatTable, warnings: list[str]) -> tuple[int, Choice]:
    auto, auto_reason = _auto_branch(gpus, route, release, t)
    if requested is None:
        return auto, Choice(str(auto), auto_reason)
    if not re.fullmatch(r"\d{3}", str(requested)):
        raise PreflightError(f"nvidia_driver_branch {requested!r} is not a driver branch such as 580; "
                             f"use nvidia_driver_branch: {auto}")
    branch = int(requested)
    for gpu in gpus:
        last = gpu.architecture.last_branch
        if last is not None and branch > last:
            raise PreflightError(f"nvidia_driver_branch {branch} cannot drive {gpu.describe()}: "
                                 f"{gpu.architecture.label} support ends with branch {last}; "
                                 f"use nvidia_driver_branch: {last}")
    floor = _branch_floor(gpus, t)
    if floor and branch < floor[1]:
        raise PreflightError(f"nvidia_driver_branch {branch} cannot drive {floor[0].describe()}: "
                             f"{_floor_why(*floor)}; use nvidia_driver_branch: {auto}")
    stack_min = t.min_branch_for_cuda(t.minimum_cuda)
    if stack_min and branch < stack_min:
        raise PreflightError(f"nvidia_driver_branch {branch} is too old for this stack: CUDA {t.minimum_cuda} needs "
                             f"branch {stack_min} or newer; use nvidia_driver_branch: {auto}")
    if not _available(branch, route, release):
        raise PreflightError(f"nvidia_driver_branch {branch} is not in Ubuntu {release.version}'s archive "
                             f"(ubuntu-drivers offers {', '.join(release.driver_packages)}); use nvidia_driver_branch: "
                             f"{auto}, or nvidia_driver_route: cuda-repo")
    row = t.branches.get(branch)
    if row is None:
        warnings.append(f"driver branch {branch} is not in gpu_compat.yml's section 'driver_branches': its support "
                        f"status and end of life are unknown here")
    elif not t.supported(branch):
        warnings.append(f"driver branch {branch} reached its end of life in {row.end_of_life}: it gets no more "
                        f"fixes; {auto} is supported")
    return branch, Choice(str(branch), f"requested; {auto_reason}")


def _open_reason(gpu: GpuModel) -> str:
    if gpu.open_override:
        return f"{gpu.model} (a Grace part) requires the open kernel modules"
    return f"{gpu.architecture.label} requires the open kernel modules"


def _choose_flavour(gpus: list[GpuModel], requested: Any, branch: int, t: CompatTable) -> Choice:
    no_open = [g for g in gpus if g.open_modules == "no"]
    need_open = [g for g in gpus if g.open_modules == "required"]
    if no_open and need_open:
        raise PreflightError(
            f"no driver flavour can drive both {need_open[0].describe()} and {no_open[0].describe()}: "
            f"{_open_reason(need_open[0]).replace(' requires', ' requires')}, which do not support "
            f"{no_open[0].architecture.label}; put these GPUs on separate hosts")
    mixed = len({g.architecture.name for g in gpus}) > 1
    open_only = bool(t.branches.get(branch) and t.branches[branch].open_only)
    if requested is None:
        if need_open:
            return Choice("open", _open_reason(need_open[0]))
        if no_open:
            why = f"{no_open[0].architecture.label} has no open kernel module support"
            return Choice("proprietary", f"{why} (mixed host: {_labels(gpus)})" if mixed else why)
        if mixed:
            return Choice("open", f"mixed host ({_labels(gpus)}) with no pre-Turing GPU: the open kernel modules, "
                                  f"NVIDIA's recommendation from Turing on")
        return Choice("open", f"{_labels(gpus)} supports the open kernel modules, "
                              f"NVIDIA's recommendation from Turing on")
    if requested not in FLAVOURS:
        raise PreflightError(f"nvidia_driver_flavour {requested!r} is not one of {', '.join(FLAVOURS)}; "
                             f"use nvidia_driver_flavour: {_choose_flavour(gpus, None, branch, t).value}")
    if requested == "open" and no_open:
        raise PreflightError(f"nvidia_driver_flavour open cannot drive {no_open[0].describe()}: the open kernel "
                             f"modules need Turing or newer; use nvidia_driver_flavour: proprietary")
    if requested == "proprietary" and need_open:
        raise PreflightError(f"nvidia_driver_flavour proprietary cannot drive {need_open[0].describe()}: "
                             f"{_open_reason(need_open[0])}; use nvidia_driver_flavour: open")
    if requested == "proprietary" and open_only:
        raise PreflightError(f"nvidia_driver_flavour proprietary does not exist for branch {branch}: from branch 615 "
                             f"only the open kernel modules are shipped (Ubuntu's nvidia-dkms-{branch}-server is a "
                             f"transitional package); use nvidia_driver_flavour: open")
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
    if facts.get("arch") not in (None, "", "amd64") and request.get("apptainer_source") == "deb":
        # github.com/apptainer/apptainer releases: apptainer_VERSION_amd64.deb only; the PPA builds arm64 too.
        fix = "set apptainer_source: ppa" if _on_ubuntu(facts) else "Apptainer's PPA serves Ubuntu only: install it from source"
        raise PreflightError(f"apptainer_source deb cannot work on an {facts['arch']} host: Apptainer's release .deb "
                             f"is built for amd64 only; {fix}")


def _choose_route(facts: dict[str, Any], requested: Any, release: UbuntuRelease | None = None) -> Choice:
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
    if release is not None and release.cuda_repo is None:
        raise PreflightError(f"nvidia_driver_route cuda-repo cannot work on Ubuntu {release.version}: NVIDIA has no "
                             f"CUDA repository for it in gpu_compat.yml; use nvidia_driver_route: ubuntu-drivers")
    secure_boot = facts.get("secure_boot", "unknown")
    if secure_boot == "enabled":
        raise PreflightError("nvidia_driver_route cuda-repo cannot work with Secure Boot enabled: its DKMS-built "
                             "kernel modules are not signed by a key the kernel trusts and would be rejected; "
                             "use nvidia_driver_route: ubuntu-drivers")
    if secure_boot == "disabled":
        return Choice(requested, "requested; Secure Boot is disabled, so DKMS-built modules load")
    return Choice(requested, "requested; Secure Boot state unknown: DKMS-built modules are rejected if it is on")


_DRIVER_DEMANDS = ("nvidia_driver_branch", "nvidia_driver_flavour")


def _release(facts: dict[str, Any], t: CompatTable) -> UbuntuRelease | None:
    return t.ubuntu_releases.get(str(facts.get("os_version_id", ""))) if facts.get("os_id") == "ubuntu" else None


def _ubuntu_driver(branch: int, flavour: str | None, release: UbuntuRelease | None) -> str:
    name = (release.driver_package(branch) if release else None) or f"{branch}-server"
    return name + ("-open" if flavour == "open" else "")


def decide(facts: dict[str, Any], request: dict[str, Any]) -> Decision:
    """Decide route, branch, flavour, CUDA ceiling and NGC tag; raise PreflightError if nothing can work."""
    t = table()
    found, gpu_reason, warnings = gpus_from_facts(facts, t)
    release = _release(facts, t)
    key = release.cuda_repo_key if release else "3bf863cc.pub"
    if found:
        _choose_route(facts, request.get("nvidia_driver_route"), release)  # its refusal comes first
    _check_vendor_sources(facts, request)
    if not found:
        demands = [f"{k} {request[k]}" for k in _DRIVER_DEMANDS if request.get(k) is not None]
        if demands:
            raise PreflightError(f"{' and '.join(demands)} requested, but {gpu_reason}; remove "
                                 f"{', '.join(d.split()[0] for d in demands)} or check that the GPU is attached")
        none = Choice(None, "no NVIDIA GPU: no driver to install")
        tag = request.get("ngc_pytorch_tag")
        newest = newest_ngc_tag(t, None, None)
        ngc = (Choice(str(tag), "requested; no GPU here to check it against") if tag else
               Choice(newest.tag if newest else None, "no GPU here to limit it: newest in gpu_compat.yml"))
        return Decision((), gpu_reason, none, none, none, Choice(None, "no GPU here to limit CUDA"), ngc,
                        tuple(warnings), None, key)
    gpus = _distinct([model for _, model in found])
    check_cpu_arch(gpus, facts)
    _check_stack(gpus, t)
    route = _choose_route(facts, request.get("nvidia_driver_route"), release)
    branch, branch_choice = _choose_branch(gpus, request.get("nvidia_driver_branch"), route.value or "",
                                           release, t, warnings)
    flavour = _choose_flavour(gpus, request.get("nvidia_driver_flavour"), branch, t)
    ceiling = choose_cuda_ceiling(gpus, branch, request.get("cuda_version"), t)
    ngc = choose_ngc(gpus, branch, ceiling.value or "", request.get("ngc_pytorch_tag"), t)
    found_gpus = tuple(FoundGpu(slot, m.pci_id, m.model, m.architecture.label, m.compute_capability)
                       for slot, m in found)
    return Decision(found_gpus, gpu_reason, route, branch_choice, flavour, ceiling, ngc, tuple(warnings),
                    _ubuntu_driver(branch, flavour.value, release), key)
