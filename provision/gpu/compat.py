"""The GPU compatibility table (provision/data/gpu_compat.yml): loaded once, validated, looked up."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from provision.errors import CompatTableError  # noqa: F401  (defined with the others)
from provision.gpu.compat_schema import check_policy, rows, unique
from provision.yamlfile import parse_yaml

TABLE_NAME = "provision/data/gpu_compat.yml"


def parse_version(text: str) -> tuple[int, ...]:
    """'12.9' -> (12, 9), for ordering CUDA versions, NGC tags and compute capabilities."""
    return tuple(int(part) for part in text.split("."))


def branch_of(driver: str) -> int:
    """'580.82.07' -> 580."""
    return int(driver.split(".")[0])


@dataclass(frozen=True)
class Architecture:
    name: str                  # table key: "volta"
    label: str                 # for people: "Volta"
    open_modules: str          # "no" | "yes" | "required"
    last_branch: int | None    # None: still supported by current branches
    cuda_min: str | None       # oldest toolkit that can target it (None: any)
    cuda_max: str | None       # newest toolkit that can target it (None: current)
    source: str
    compute_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuModel:
    pci_id: str                # "10de:1db1"
    model: str                 # "Tesla V100-SXM2-16GB"
    architecture: Architecture
    compute_capability: str    # "7.0"
    source: str
    min_driver: str | None = None      # the first driver for this GPU, when later than its architecture's
    cpu_arch: str | None = None        # "arm64" for Grace parts and T4G: the only CPU they come with
    open_override: str | None = None   # "required" for Grace parts (Hopper otherwise allows both)

    @property
    def sm(self) -> str:
        """The compiler target name: '7.0' -> 'sm_70'."""
        return "sm_" + self.compute_capability.replace(".", "")

    @property
    def open_modules(self) -> str:
        return self.open_override or self.architecture.open_modules

    @property
    def min_branch(self) -> int | None:
        return branch_of(self.min_driver) if self.min_driver else None

    def describe(self) -> str:
        """'Tesla V100-SXM2-16GB (Volta, sm_70)', the way refusals name a GPU."""
        return f"{self.model} ({self.architecture.label}, {self.sm})"


@dataclass(frozen=True)
class CudaRelease:
    cuda: str
    driver: str | None         # None: the runfile bundles no driver
    source: str

    @property
    def branch(self) -> int | None:
        return branch_of(self.driver) if self.driver else None


@dataclass(frozen=True)
class NgcTag:
    tag: str                   # "25.06"
    cuda: str                  # "12.9"
    source: str


@dataclass(frozen=True)
class DriverBranch:
    branch: int
    designation: str           # "long-term" | "production" | "new-feature"
    end_of_life: str | None    # "2028-06"; None for new-feature branches
    open_only: bool
    source: str


@dataclass(frozen=True)
class UbuntuRelease:
    version: str               # "24.04"
    codename: str
    driver_packages: tuple[str, ...]   # ubuntu-drivers names: "580-server", "610"
    cuda_repo: str | None              # "ubuntu2404"
    cuda_repo_key: str | None          # "3bf863cc.pub"
    tmp_tmpfs: bool
    source: str

    def driver_package(self, branch: int) -> str | None:
        """The archive's name for a branch ('580-server', else '610'), or None if it has none."""
        names = [n for n in self.driver_packages if n.split("-")[0] == str(branch)]
        return next((n for n in names if n.endswith("-server")), names[0] if names else None)


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: GpuModel
    count: int
    source: str
    arch: str = "amd64"


@dataclass(frozen=True)
class CompatTable:
    """All sections of gpu_compat.yml, indexed; every lookup returns None for an unknown key."""

    minimum_cuda: str
    as_of: str
    ngc_min_compute_capability: str
    architectures: dict[str, Architecture]
    gpus: dict[str, GpuModel]
    branches: dict[int, DriverBranch]
    min_branch_by_cuda_major: dict[int, int]
    cuda_releases: tuple[CudaRelease, ...]       # oldest first
    ngc_pytorch: tuple[NgcTag, ...]              # oldest first
    ubuntu_releases: dict[str, UbuntuRelease]
    instances: dict[str, InstanceType]

    @property
    def current_branch(self) -> int:
        """The newest branch the table knows."""
        return max(self.branches)

    def min_branch_for_cuda(self, cuda: str) -> int | None:
        return self.min_branch_by_cuda_major.get(parse_version(cuda)[0])

    def ngc_tag(self, tag: str) -> NgcTag | None:
        return next((row for row in self.ngc_pytorch if row.tag == tag), None)

    def cuda_release(self, cuda: str) -> CudaRelease | None:
        return next((row for row in self.cuda_releases if row.cuda == cuda), None)

    def architecture_for(self, compute_capability: str) -> Architecture | None:
        """The architecture whose compute capabilities include '9.0', or None."""
        return next((a for a in self.architectures.values() if compute_capability in a.compute_capabilities), None)

    def supported(self, branch: int) -> bool:
        """False for a branch past its end of life on the table's date."""
        row = self.branches.get(branch)
        return not (row and row.end_of_life and row.end_of_life < self.as_of)


def _none_if_current(value: Any) -> Any:
    return None if value == "current" else value


def _sections(document: dict[str, Any], name: str) -> dict[str, list[dict[str, Any]]]:
    keys = {"architectures": "name", "gpus": "pci_id", "driver_branches": "branch", "cuda_min_driver": "cuda_major",
            "cuda_releases": "cuda", "ngc_pytorch": "tag", "ubuntu_releases": "version", "ec2_instances": "type"}
    found = {}
    for section, key in keys.items():
        found[section] = rows(document, section, name)
        unique(found[section], key)
    return found


def _gpus(gpu_rows: list[dict[str, Any]], architectures: dict[str, Architecture]) -> dict[str, GpuModel]:
    gpus: dict[str, GpuModel] = {}
    for row in gpu_rows:
        if row["architecture"] not in architectures:
            raise CompatTableError(f"{row['__where__']}: architecture {row['architecture']!r} is not "
                                   f"in section 'architectures' ({', '.join(architectures)})")
        gpus[row["pci_id"]] = GpuModel(row["pci_id"], row["model"], architectures[row["architecture"]],
                                       row["compute_capability"], row["source"], row.get("min_driver"),
                                       row.get("cpu_arch"), row.get("open_modules"))
    return gpus


def load_table(path: Path | None = None) -> CompatTable:
    """Read and validate a compatibility table; the default is the one shipped with provision."""
    if path is None:
        text, name = (resources.files("provision") / "data" / "gpu_compat.yml").read_text(), TABLE_NAME
    else:
        text, name = Path(path).read_text(), str(path)
    document = parse_yaml(text, name, CompatTableError)
    if not isinstance(document, dict):
        raise CompatTableError(f"{name}: expected a mapping of sections")
    policy = document.get("policy")
    check_policy(policy, name)
    s = _sections(document, name)
    architectures = {r["name"]: Architecture(
        name=r["name"], label=r["label"], open_modules=r["open_modules"],
        last_branch=_none_if_current(r["last_branch"]), cuda_min=r["cuda_min"],
        cuda_max=_none_if_current(r["cuda_max"]), source=r["source"],
        compute_capabilities=tuple(r["compute_capabilities"])) for r in s["architectures"]}
    gpus = _gpus(s["gpus"], architectures)
    majors = {r["cuda_major"] for r in s["cuda_min_driver"]}
    for row in [*s["cuda_releases"], *s["ngc_pytorch"]]:
        if parse_version(row["cuda"])[0] not in majors:
            raise CompatTableError(f"{row['__where__']}: CUDA {row['cuda']} has no row in 'cuda_min_driver'")
    for row in s["ec2_instances"]:
        if row["pci_id"] not in gpus:
            raise CompatTableError(f"{row['__where__']}: pci_id {row['pci_id']} is not in section 'gpus'")
    return CompatTable(
        minimum_cuda=policy["minimum_cuda"], as_of=policy["as_of"],
        ngc_min_compute_capability=policy["ngc_min_compute_capability"],
        architectures=architectures, gpus=gpus,
        branches={r["branch"]: DriverBranch(r["branch"], r["designation"], r["end_of_life"], r["open_only"], r["source"])
                  for r in s["driver_branches"]},
        min_branch_by_cuda_major={r["cuda_major"]: r["min_branch"] for r in s["cuda_min_driver"]},
        cuda_releases=tuple(sorted((CudaRelease(r["cuda"], r["driver"], r["source"]) for r in s["cuda_releases"]),
                                   key=lambda r: parse_version(r.cuda))),
        ngc_pytorch=tuple(sorted((NgcTag(r["tag"], r["cuda"], r["source"]) for r in s["ngc_pytorch"]),
                                 key=lambda r: parse_version(r.tag))),
        ubuntu_releases={r["version"]: UbuntuRelease(r["version"], r["codename"], tuple(r["driver_packages"]),
                                                     r["cuda_repo"], r["cuda_repo_key"], r["tmp_tmpfs"], r["source"])
                         for r in s["ubuntu_releases"]},
        instances={r["type"]: InstanceType(r["type"], gpus[r["pci_id"]], r["count"], r["source"], r.get("arch", "amd64"))
                   for r in s["ec2_instances"]},
    )


@functools.cache
def table() -> CompatTable:
    """The shipped table, read and validated once per process."""
    return load_table()


# -- lookups on the shipped table -----------------------------------------------------------------

def gpu_for_pci_id(pci_id: str) -> GpuModel | None:
    """The GPU model for a PCI id such as '10de:1db1' (case-insensitive), or None if unknown."""
    return table().gpus.get(pci_id.strip().lower())


def architecture(name: str) -> Architecture | None:
    """An architecture by table name or label ('volta', 'Volta'), or None if unknown."""
    return table().architectures.get(name.strip().lower())


def instance_gpus(instance_type: str) -> InstanceType | None:
    """The GPU model and count of an EC2 instance type ('p3.2xlarge'), or None if not in the table."""
    return table().instances.get(instance_type.strip())


def ngc_pytorch_cuda(tag: str) -> str | None:
    """The CUDA version an NGC PyTorch tag ('25.06' or '25.06-py3') is built on, or None."""
    row = table().ngc_tag(tag.strip().removesuffix("-py3"))
    return row.cuda if row else None


def min_branch_for_cuda(cuda: str) -> int | None:
    """The oldest driver branch that runs a CUDA version ('12.9' -> 525), or None if unknown."""
    return table().min_branch_for_cuda(cuda)


def bundled_driver(cuda: str) -> str | None:
    """The driver shipped with a CUDA release ('12.9' -> '575.51.03'), or None if unknown."""
    row = table().cuda_release(cuda)
    return row.driver if row else None
