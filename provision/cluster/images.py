"""Which SIF a run means, and the proof that the cluster holds it: the expected sha256 against what is there."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provision.cluster.remote import PREFLIGHT_SCRIPT, LoginSession, values
from provision.cluster.slurm import SINFO_FORMAT, ClusterError, Partition, parse_partitions
from provision.transfer.sources import local_sha256
from provision.yamlfile import load_yaml

SIDECAR = re.compile(r"^([0-9a-f]{64}) (\d+ \d+ \d+)$")


@dataclass(frozen=True)
class ImageRef:
    """A SIF as the user named it: its path on the cluster, its recipe name, the local copy if given."""

    name: str              # recipe name: images/NAME/ may hold sbatch.j2 and recipe.yml
    remote_path: str       # on the cluster, may start with ~
    local_path: Path | None


@dataclass(frozen=True)
class ClusterImage:
    """A SIF verified on the cluster, and the cluster's partitions as sinfo saw them in the same round trip."""

    ref: ImageRef
    path: str              # absolute, symlinks resolved
    sha256: str
    runtime: str           # apptainer or singularity on the login host ('' when neither)
    partitions: dict[str, Partition]
    slurm_error: str


def image_ref(name_or_sif: str, sif_dir: str) -> ImageRef:
    """A local .sif file (shipped under its base name), a path on the cluster, or a recipe name (sif_dir/NAME.sif)."""
    local = Path(name_or_sif).expanduser()
    if name_or_sif.endswith(".sif") and local.is_file():
        return ImageRef(local.name[:-4], f"{sif_dir.rstrip('/')}/{local.name}", local)
    if "/" in name_or_sif:
        base = name_or_sif.rstrip("/").rsplit("/", 1)[-1]
        return ImageRef(base[:-4] if base.endswith(".sif") else base, name_or_sif, None)
    stem = name_or_sif[:-4] if name_or_sif.endswith(".sif") else name_or_sif
    if not stem:
        raise ClusterError("name an image: a recipe name, a local .sif file or a path on the cluster")
    return ImageRef(stem, f"{sif_dir.rstrip('/')}/{stem}.sif", None)


def verify_on_cluster(session: LoginSession, ref: ImageRef, rehash: bool = False) -> ClusterImage:
    """The SIF is on the cluster with the expected sha256 (the local file's, else ship's sidecar's); else ClusterError.

    A SIF that ship did not carry (pulled on the cluster, copied there by hand, anywhere on the
    cluster) is taken as it is: its sha256 is taken there once and recorded beside it.
    The far end hashes the file unless a record vouches for it (same size, mtime and inode
    as when it was hashed) and `rehash` is off. Also reads the partitions, in the same round trip.
    """
    host = session.host.name
    done = session.run(PREFLIGHT_SCRIPT, ref.remote_path, "1" if rehash else "0", SINFO_FORMAT)
    found = values(done.stdout)
    if done.status != 0 or "runtime" not in found:
        raise ClusterError(f"{host}: the check of {ref.remote_path} failed (exit {done.status}): "
                           f"{(done.stderr or done.stdout).strip()[-300:] or 'no output'}")
    ship_hint = f"ship it first: invoke ship {ref.local_path or ref.name + '.sif'} {host}"
    if "missing" in found:
        raise ClusterError(f"{host}: no SIF at {found['missing'][0]}; {ship_hint}")
    sidecar = SIDECAR.match(found.get("sidecar", [""])[0])
    record = SIDECAR.match(found.get("record", [""])[0])
    vouched = sidecar and sidecar.group(2) == found["final"][0]
    actual = found["sha256"][0] if "sha256" in found else (sidecar or record).group(1)
    if ref.local_path is not None:
        expected, source = local_sha256(str(ref.local_path)), f"the local {ref.local_path}"
    elif sidecar:
        expected, source = sidecar.group(1), "ship's record"
    else:  # pulled there or copied by hand: what is there is the image, hashed there once and recorded
        expected, source = actual, "the cluster's record"
    if actual != expected:
        changed = "" if vouched or not sidecar else " (it changed after ship wrote it)"
        raise ClusterError(f"{host}: {found['path'][0]} has sha256 {actual}, {source} has {expected}{changed}; {ship_hint}")
    return ClusterImage(ref, found["path"][0], actual, found["runtime"][0],
                        parse_partitions("\n".join(found.get("partition", []))),
                        found.get("slurm_error", [""])[0])


def recipe_start(images_dir: Path, name: str) -> str | None:
    """The `start:` command line of images/NAME/recipe.yml, or None when there is no such recipe or field."""
    path = Path(images_dir) / name / "recipe.yml"
    if not path.is_file():
        return None
    data = load_yaml(path, ClusterError)
    start = data.get("start") if isinstance(data, dict) else None
    return str(start) if start else None


def recipe_ports(images_dir: Path, name: str) -> list[int]:
    path = Path(images_dir) / name / "recipe.yml"
    if not path.is_file():
        return []
    data = load_yaml(path, ClusterError)
    ports = data.get("ports") if isinstance(data, dict) else None
    return [int(p) for p in ports or [] if str(p).isdigit()]
