"""The NVIDIA GPUs a host has, from its facts: PCI ids from sysfs, else the declared EC2 instance type.

A GPU missing from gpu_compat.yml is taken by the compute capability nvidia-smi reports on the
host (facts `gpu_caps`), with a warning naming the row to add; without a driver it is refused.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.errors import PreflightError

if TYPE_CHECKING:  # the table loads with preflight, not with every run's facts (bus_key)
    from provision.gpu.compat import CompatTable, GpuModel


def bus_key(address: str) -> str:
    """'00000000:00:1E.0' or '0000:00:1e.0' -> '00:1e.0', to match nvidia-smi's bus ids to sysfs slots."""
    return ":".join(address.strip().lower().split(":")[-2:])


def _fallback(pci_id: str, slot: str, facts: dict[str, Any], t: CompatTable) -> tuple[GpuModel, str]:
    cap = (facts.get("gpu_caps") or {}).get(bus_key(slot)) if slot else None
    if not cap:
        raise PreflightError(
            f"GPU {pci_id} at {slot or '?'} is not in gpu_compat.yml, so preflight cannot tell its architecture; "
            f"add a row to section 'gpus' (pci_id, model, architecture, compute_capability, source) from NVIDIA's "
            f"list of supported GPUs, or install a driver first: preflight then takes the compute capability "
            f"nvidia-smi reports")
    arch = t.architecture_for(cap)
    if arch is None:
        raise PreflightError(f"GPU {pci_id} at {slot} is not in gpu_compat.yml, and the compute capability "
                             f"nvidia-smi reports, {cap}, is in no row of section 'architectures'; add both rows")
    from provision.gpu.compat import GpuModel

    model = GpuModel(pci_id, f"NVIDIA GPU {pci_id}", arch, cap, "nvidia-smi --query-gpu=compute_cap on the host")
    warning = (f"GPU {pci_id} at {slot} is not in gpu_compat.yml; nvidia-smi reports compute capability {cap}, "
               f"so preflight takes it as {arch.label}: add a row to section 'gpus' "
               f"{{pci_id: \"{pci_id}\", model: \"<name nvidia-smi prints>\", architecture: {arch.name}, "
               f"compute_capability: \"{cap}\", source: \"<NVIDIA's list of supported GPUs>\"}}")
    return model, warning


def gpus_from_facts(facts: dict[str, Any], t: CompatTable
                    ) -> tuple[list[tuple[str | None, GpuModel]], str, list[str]]:
    """(slot, model) per NVIDIA GPU, why preflight believes it, and warnings for GPUs taken by compute capability."""
    devices = [d for d in facts.get("gpus") or []
               if str(d.get("pci_id", "")).lower().startswith("10de:")
               and str(d.get("class", "0x03")).startswith("0x03")]
    warnings: list[str] = []
    if devices:
        found = []
        for device in devices:
            pci_id, slot = str(device["pci_id"]).lower(), device.get("slot")
            model = t.gpus.get(pci_id)
            if model is None:
                model, warning = _fallback(pci_id, slot, facts, t)
                warnings.append(warning)
            found.append((slot, model))
        return found, f"{len(found)} NVIDIA GPU(s) on the PCI bus", warnings
    instance_type = facts.get("instance_type")
    if instance_type:
        row = t.instances.get(instance_type)
        if row is None:
            return [], f"instance type {instance_type} is not in gpu_compat.yml's EC2 table: no NVIDIA GPU assumed", []
        return [(None, row.gpu)] * row.count, f"instance type {instance_type} has {row.count}x {row.gpu.model}", []
    return [], "no NVIDIA GPU on the PCI bus (no vendor 10de display-class device)", []


def check_cpu_arch(gpus: list[GpuModel], facts: dict[str, Any]) -> None:
    """Refuse a GPU that only ever comes with another CPU architecture than the host's (a GH200 on amd64)."""
    arch = facts.get("arch")
    for gpu in gpus:
        if gpu.cpu_arch and arch and arch != gpu.cpu_arch:
            raise PreflightError(f"{gpu.describe()} comes only with {gpu.cpu_arch} CPUs, but this host's architecture "
                                 f"is {arch}; check the facts (user-data: declared_facts arch: {gpu.cpu_arch})")
