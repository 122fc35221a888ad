"""Will this image run on that partition? The partition's GPUs and driver against the image's CUDA.

Pure functions: what Slurm (sinfo's gres and node features) or nvidia-smi on a node says about a
partition, read into PartitionGpus; check_image_on_partition refuses an image whose CUDA needs a
newer driver than the nodes run, or that has no code for their GPUs, and says what to choose
instead (an older NGC tag, another partition, a legacy base image).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from provision.errors import PreflightError
from provision.gpu.compat import Architecture, CompatTable, branch_of, parse_version, table
from provision.gpu.cuda_choice import newest_ngc_tag
from provision.gpu.images import base_image_cuda

# sinfo -h -o SINFO_GPU_FORMAT: partition, gres (gpu:TYPE:N), node features, one line per node group.
SINFO_GPU_FORMAT = "%P|%G|%f"
# Run once on a node of the partition (through srun); parse_node_query reads its output.
NODE_QUERY = "nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader"
# Node features that carry the driver version: nvidia_driver_580.95.05, driver-580, nvidia-driver=580.95.05.
_DRIVER_FEATURE = re.compile(r"(?:nvidia[_-]?)?driver[_=-]?(\d{3}(?:\.\d+){0,2})", re.IGNORECASE)


@dataclass(frozen=True)
class NodeGpu:
    name: str                          # "Tesla V100-SXM2-32GB" or a gres type such as "v100"
    architecture: Architecture | None
    compute_capability: str | None

    def describe(self) -> str:
        if self.architecture and self.compute_capability:
            return f"{self.name} ({self.architecture.label}, sm_{self.compute_capability.replace('.', '')})"
        return self.name


@dataclass(frozen=True)
class PartitionGpus:
    partition: str
    gpus: tuple[NodeGpu, ...]          # distinct GPU kinds on the partition's nodes
    driver: str | None                 # the oldest driver version the nodes run, when known
    source: str                        # where this came from: "sinfo gres and features", "nvidia-smi on a node"
    gres_gpus: bool = True             # Slurm gives its nodes gpu gres (typed or not)

    def describe(self) -> str:
        kinds = ", ".join(g.describe() for g in self.gpus) or "no GPU"
        return f"{kinds} on driver {self.driver}" if self.driver else kinds


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def gpu_from_name(name: str, compute_capability: str | None = None, t: CompatTable | None = None) -> NodeGpu:
    """A node's GPU by name (nvidia-smi's, or a gres type like tesla_v100), its architecture from the table."""
    t = t or table()
    if compute_capability:
        return NodeGpu(name, t.architecture_for(compute_capability), compute_capability)
    wanted = _tokens(name)
    for gpu in t.gpus.values():
        if wanted and all(token in _tokens(gpu.model) for token in wanted):
            return NodeGpu(name, gpu.architecture, gpu.compute_capability)
    return NodeGpu(name, None, None)


def _driver(versions: list[str]) -> str | None:
    return min(versions, key=parse_version) if versions else None


def parse_node_query(partition: str, output: str) -> PartitionGpus:
    """NODE_QUERY's output from one node: name, compute capability and driver per GPU."""
    gpus, drivers = [], []
    for row in csv.reader([line for line in output.splitlines() if line.strip()], skipinitialspace=True):
        if len(row) != 3 or not re.fullmatch(r"\d+\.\d+", row[1].strip()):
            raise PreflightError(f"partition {partition}: nvidia-smi on a node printed {output.strip()[:200]!r}, "
                                 f"not {NODE_QUERY}'s lines")
        gpus.append(gpu_from_name(row[0].strip(), row[1].strip()))
        drivers.append(row[2].strip())
    return PartitionGpus(partition, tuple(dict.fromkeys(gpus)), _driver(drivers), "nvidia-smi on a node")


def parse_sinfo_gpus(output: str) -> dict[str, PartitionGpus]:
    """sinfo -h -o SINFO_GPU_FORMAT: each partition's GPU types (gres gpu:TYPE:N) and driver feature."""
    kinds: dict[str, list[NodeGpu]] = {}
    drivers: dict[str, list[str]] = {}
    has_gpus: set[str] = set()
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not fields[0]:
            continue
        name = fields[0].rstrip("*")
        kinds.setdefault(name, [])
        drivers.setdefault(name, [])
        for gres in fields[1].split(","):
            parts = gres.split("(")[0].split(":")
            if parts[0] == "gpu":
                has_gpus.add(name)
            if parts[0] == "gpu" and len(parts) == 3:
                kinds[name].append(gpu_from_name(parts[1]))
        for feature in fields[2].split(","):
            if match := _DRIVER_FEATURE.fullmatch(feature.strip()):
                drivers[name].append(match.group(1))
    return {name: PartitionGpus(name, tuple(dict.fromkeys(kinds[name])), _driver(drivers[name]),
                                "sinfo gres and features", name in has_gpus) for name in kinds}


def complete(info: PartitionGpus | None) -> bool:
    """True when the GPUs' architectures and the driver are both known (else ask a node with nvidia-smi)."""
    return bool(info and info.driver and info.gpus and all(g.architecture for g in info.gpus))


def _problem(cuda: str, ngc: bool, info: PartitionGpus, t: CompatTable) -> str | None:
    """Why an image built on `cuda` cannot run on the partition's nodes, or None if it can."""
    if info.driver:
        need = t.min_branch_for_cuda(cuda)
        if need and branch_of(info.driver) < need:
            return (f"CUDA {cuda} needs driver branch {need} or newer, and the nodes run {info.driver} "
                    f"(branch {branch_of(info.driver)})")
    for gpu in info.gpus:
        arch = gpu.architecture
        if arch is None:
            continue
        if ngc and gpu.compute_capability and parse_version(gpu.compute_capability) < parse_version(
                t.ngc_min_compute_capability):
            return (f"it has no code for {gpu.describe()}: NGC framework images need compute capability "
                    f"{t.ngc_min_compute_capability} or later")
        if arch.cuda_max and parse_version(cuda) > parse_version(arch.cuda_max):
            return (f"it has no code for {gpu.describe()}: CUDA {arch.cuda_max} is the last toolkit for "
                    f"{arch.label}")
        if arch.cuda_min and parse_version(cuda) < parse_version(arch.cuda_min):
            return f"it has no code for {gpu.describe()}: {arch.label} needs CUDA {arch.cuda_min} or newer"
    return None


def _working_tag(info: PartitionGpus, t: CompatTable) -> str | None:
    """The newest NGC PyTorch tag that runs on the partition's nodes, or None."""
    archs = [g.architecture for g in info.gpus if g.architecture]
    if any(g.compute_capability and parse_version(g.compute_capability) < parse_version(t.ngc_min_compute_capability)
           for g in info.gpus):
        return None
    ceilings = [a.cuda_max for a in archs if a.cuda_max]
    if info.driver:
        runs = [r.cuda for r in t.cuda_releases if (t.min_branch_for_cuda(r.cuda) or 10**6) <= branch_of(info.driver)]
        ceilings += runs[-1:] if runs else ["0.0"]
    floors = [a.cuda_min for a in archs if a.cuda_min]
    row = newest_ngc_tag(t, min(ceilings, key=parse_version) if ceilings else None,
                         max(floors, key=parse_version) if floors else None)
    return row.tag if row else None


def check_image_on_partition(image: str, base_image: str, info: PartitionGpus,
                             others: dict[str, PartitionGpus] | None = None) -> str:
    """A one-line 'fits' reason, or PreflightError naming what to choose instead. Unknown bases pass."""
    t = table()
    found = base_image_cuda(base_image)
    if found is None:
        return f"base {base_image}: no CUDA version known for it, nothing to check"
    cuda, ngc = found
    problem = _problem(cuda, ngc, info, t)
    if problem is None:
        return f"{base_image} (CUDA {cuda}) runs on partition {info.partition}: {info.describe()}"
    choices = []
    tag = _working_tag(info, t)
    if tag:
        choices.append(f"nvcr.io/nvidia/pytorch:{tag}-py3 (the newest NGC PyTorch that runs there)")
    fits = [p for p in (others or {}).values() if p.partition != info.partition and p.gpus
            and _problem(cuda, ngc, p, t) is None and complete(p)]
    choices += [f"partition {p.partition} ({p.describe()})" for p in fits]
    choices.append("a legacy base image built for these GPUs" if not tag else "a legacy base image")
    raise PreflightError(f"image {image} ({base_image}, CUDA {cuda}) cannot run on partition {info.partition}, "
                         f"whose nodes have {info.describe()}: {problem}; choose " + ", or ".join(choices))
