"""Before a job starts an image on a partition: the partition's GPUs and driver, and whether the image fits.

The partition's GPUs come from Slurm (gres gpu:TYPE:N and a driver node feature such as
nvidia_driver_580.95.05); when Slurm does not say, nvidia-smi runs once on a node through srun and
the answer is remembered per host and partition (a day) in ~/.cache/provision/cluster-gpus.json.
The decision itself is provision/gpu/cluster_check.py.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from provision.cluster.remote import LoginSession
from provision.gpu.cluster_check import (NODE_QUERY, SINFO_GPU_FORMAT, PartitionGpus, check_image_on_partition,
                                         complete, gpu_from_name, parse_node_query, parse_sinfo_gpus)
from provision.gpu.images import base_image_cuda
from provision.yamlfile import load_yaml
from provision.errors import RecipeError

REMEMBER_S = 24 * 3600
# $1 the sinfo format. Partitions with their gres and features, one line per node group.
SINFO_SCRIPT = 'exec timeout 30 sinfo -h -o "$1"\n'
# $1 partition, $2 the nvidia-smi query: once on one node of the partition, one GPU, waiting at most a minute.
NODE_SCRIPT = 'exec timeout 120 srun --partition="$1" --nodes=1 --ntasks=1 --gres=gpu:1 --time=2 --immediate=60 ' \
              '--job-name=provision-gpu-check sh -c "$2"\n'


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "provision" / "cluster-gpus.json"


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _remembered(host: str, partition: str, path: Path) -> PartitionGpus | None:
    entry = _load(path).get(host, {}).get(partition)
    if not entry or time.time() - entry.get("at", 0) > REMEMBER_S:
        return None
    gpus = tuple(gpu_from_name(name, cap) for name, cap in entry["gpus"])
    return PartitionGpus(partition, gpus, entry.get("driver"), f"{entry['source']}, remembered")


def _remember(host: str, info: PartitionGpus, path: Path) -> None:
    data = _load(path)
    data.setdefault(host, {})[info.partition] = {
        "gpus": [[g.name, g.compute_capability] for g in info.gpus], "driver": info.driver,
        "source": info.source, "at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    temporary.replace(path)


def partition_gpus(session: LoginSession, partition: str | None, path: Path | None = None
                   ) -> tuple[PartitionGpus | None, dict[str, PartitionGpus]]:
    """The named (else the default) partition's GPUs and driver, and every partition's as Slurm says."""
    path = path or cache_path()
    done = session.run(SINFO_SCRIPT, SINFO_GPU_FORMAT)
    if done.status != 0:
        return None, {}
    everything = parse_sinfo_gpus(done.stdout)
    if partition is None:
        partition = next((line.split("|")[0].rstrip("*") for line in done.stdout.splitlines()
                          if line.split("|")[0].endswith("*")), None)
    info = everything.get(partition or "")
    if info is None or not info.gres_gpus:
        return info, everything
    if not complete(info):
        info = _remembered(session.host.name, info.partition, path) or info
    if not complete(info):
        probe = session.run(NODE_SCRIPT, info.partition, NODE_QUERY)
        if probe.status == 0 and probe.stdout.strip():
            info = parse_node_query(info.partition, probe.stdout)
            _remember(session.host.name, info, path)
    everything[info.partition] = info
    return info, everything


def recipe_base(images_dir: Path, name_or_sif: str) -> str | None:
    """The base image of the recipe a name or a SIF (NAME.sif) comes from, or None."""
    name = Path(name_or_sif).name.removesuffix(".sif")
    file = Path(images_dir) / name / "recipe.yml"
    if not file.is_file():
        return None
    data = load_yaml(file, RecipeError)
    return data.get("base") if isinstance(data, dict) else None


def require_image_fits(session: LoginSession, name_or_sif: str, partition: str | None,
                       images_dir: Path = Path("images"), path: Path | None = None) -> str:
    """Raise PreflightError when the image cannot run on the partition's nodes; else say why it may."""
    base = recipe_base(images_dir, name_or_sif)
    if base is None or base_image_cuda(base) is None:
        return f"{name_or_sif}: no recipe base with a known CUDA version, nothing to check"
    info, everything = partition_gpus(session, partition, path)
    if info is None or not info.gres_gpus:
        return f"partition {partition or '(default)'}: no GPU gres, nothing to check"
    if not complete(info):
        return f"partition {info.partition}: its GPUs or driver are unknown (no gres type, no driver feature, " \
               f"nvidia-smi on a node did not answer), not checked"
    return check_image_on_partition(Path(name_or_sif).name.removesuffix(".sif"), base, info, everything)
