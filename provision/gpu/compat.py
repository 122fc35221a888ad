"""The GPU compatibility table (provision/data/gpu_compat.yml): loaded once, validated, looked up."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable


from provision.yamlfile import parse_yaml
from provision.errors import CompatTableError  # noqa: F401  (defined with the others)

TABLE_NAME = "provision/data/gpu_compat.yml"


def parse_version(text: str) -> tuple[int, ...]:
    """'12.9' -> (12, 9), for ordering CUDA versions and NGC tags."""
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Architecture:
    name: str                  # table key: "volta"
    label: str                 # for people: "Volta"
    open_modules: str          # "no" | "yes" | "required"
    last_branch: int | None    # None: still supported by current branches
    cuda_min: str | None       # oldest toolkit that can target it (None: any)
    cuda_max: str | None       # newest toolkit that can target it (None: current)
    source: str


@dataclass(frozen=True)
class GpuModel:
    pci_id: str                # "10de:1db1"
    model: str                 # "Tesla V100-SXM2-16GB"
    architecture: Architecture
    compute_capability: str    # "7.0"
    source: str

    @property
    def sm(self) -> str:
        """The compiler target name: '7.0' -> 'sm_70'."""
        return "sm_" + self.compute_capability.replace(".", "")

    def describe(self) -> str:
        """'Tesla V100-SXM2-16GB (Volta, sm_70)', the way refusals name a GPU."""
        return f"{self.model} ({self.architecture.label}, {self.sm})"


@dataclass(frozen=True)
class CudaRelease:
    cuda: str
    driver: str
    source: str

    @property
    def branch(self) -> int:
        return int(self.driver.split(".")[0])


@dataclass(frozen=True)
class NgcTag:
    tag: str                   # "25.06"
    cuda: str                  # "12.9"
    source: str


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpu: GpuModel
    count: int
    source: str


@dataclass(frozen=True)
class CompatTable:
    """All sections of gpu_compat.yml, indexed; every lookup returns None for an unknown key."""

    minimum_cuda: str
    current_branch: int
    architectures: dict[str, Architecture]
    gpus: dict[str, GpuModel]
    min_branch_by_cuda_major: dict[int, int]
    cuda_releases: tuple[CudaRelease, ...]       # oldest first
    ngc_pytorch: tuple[NgcTag, ...]              # oldest first
    instances: dict[str, InstanceType]

    def min_branch_for_cuda(self, cuda: str) -> int | None:
        return self.min_branch_by_cuda_major.get(parse_version(cuda)[0])

    def ngc_tag(self, tag: str) -> NgcTag | None:
        return next((row for row in self.ngc_pytorch if row.tag == tag), None)

    def cuda_release(self, cuda: str) -> CudaRelease | None:
        return next((row for row in self.cuda_releases if row.cuda == cuda), None)


# -- validation ---------------------------------------------------------------------------------

_PCI_ID = re.compile(r"10de:[0-9a-f]{4}"), "an NVIDIA PCI id such as \"10de:1db1\" (lower case)"
_VERSION = re.compile(r"\d+\.\d+"), "a version such as \"12.9\""
_DRIVER = re.compile(r"\d+\.\d+(\.\d+)?"), "a driver version such as \"575.51.03\""


def _text(pattern: re.Pattern[str] | None = None, shape: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty string (quote versions: \"12.9\")"
        if pattern and not pattern.fullmatch(value):
            return f"{value!r} is not {shape}"
        return None
    return check


def _integer(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"


def _one_of(*allowed: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


def _current_or(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value == "current" else check(value)


def _null_or(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


_WORD = re.compile(r"[a-z]+"), "a lower-case word such as volta"
_TAG = re.compile(r"\d\d\.\d\d"), "a tag such as \"25.06\""
_INSTANCE = re.compile(r"[a-z0-9-]+\.[a-z0-9]+"), "an instance type such as p3.2xlarge"

_SECTIONS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "architectures": {"name": _text(*_WORD), "label": _text(), "source": _text(),
                      "open_modules": _one_of("no", "yes", "required"),
                      "last_branch": _current_or(_integer),
                      "cuda_min": _null_or(_text(*_VERSION)),
                      "cuda_max": _current_or(_text(*_VERSION))},
    "gpus": {"pci_id": _text(*_PCI_ID), "model": _text(), "architecture": _text(),
             "compute_capability": _text(*_VERSION), "source": _text()},
    "cuda_min_driver": {"cuda_major": _integer, "min_branch": _integer, "source": _text()},
    "cuda_releases": {"cuda": _text(*_VERSION), "driver": _text(*_DRIVER), "source": _text()},
    "ngc_pytorch": {"tag": _text(*_TAG), "cuda": _text(*_VERSION), "source": _text()},
    "ec2_instances": {"type": _text(*_INSTANCE), "pci_id": _text(*_PCI_ID), "count": _integer, "source": _text()},
}
_OPTIONAL = {"checked": _flag}
_POLICY = {"minimum_cuda": _text(*_VERSION), "current_branch": _integer, "source": _text()}


def _rows(document: dict[str, Any], section: str, name: str) -> list[dict[str, Any]]:
    """The rows of one section, each checked against its fields; raises naming the bad row."""
    rows = document.get(section)
    if not isinstance(rows, list) or not rows:
        raise CompatTableError(f"{name}: section '{section}' is missing or not a list of rows")
    fields = _SECTIONS[section]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise CompatTableError(f"{name}: {section} row {number}: is not a mapping")
        where = f"{name}:{row.line}: {section} row {number}"
        key = next((str(row[k]) for k in ("pci_id", "name", "type", "tag", "cuda", "cuda_major") if k in row), None)
        if key is not None:
            where += f" ({key})"
        unknown = sorted(set(row) - set(fields) - set(_OPTIONAL))
        if unknown:
            raise CompatTableError(f"{where}: unknown field(s) {', '.join(unknown)}")
        for field, check in fields.items():
            if field not in row:
                raise CompatTableError(f"{where}: missing '{field}'")
            complaint = check(row[field])
            if complaint:
                raise CompatTableError(f"{where}: '{field}' {complaint}")
        for field, check in _OPTIONAL.items():
            if field in row and (complaint := check(row[field])):
                raise CompatTableError(f"{where}: '{field}' {complaint}")
        row["__where__"] = where
    return rows


def _unique(rows: list[dict[str, Any]], field: str) -> None:
    seen: set[Any] = set()
    for row in rows:
        if row[field] in seen:
            raise CompatTableError(f"{row['__where__']}: duplicate {field} {row[field]!r}")
        seen.add(row[field])


def _none_if_current(value: Any) -> Any:
    return None if value == "current" else value


def load_table(path: Path | None = None) -> CompatTable:
    """Read and validate a compatibility table; the default is the one shipped with provision."""
    if path is None:
        text = (resources.files("provision") / "data" / "gpu_compat.yml").read_text()
        name = TABLE_NAME
    else:
        text, name = Path(path).read_text(), str(path)
    document = parse_yaml(text, name, CompatTableError)
    if not isinstance(document, dict):
        raise CompatTableError(f"{name}: expected a mapping of sections")
    policy = document.get("policy")
    if not isinstance(policy, dict):
        raise CompatTableError(f"{name}: section 'policy' is missing")
    for field, check in _POLICY.items():
        complaint = check(policy.get(field)) if field in policy else "is missing"
        if complaint:
            raise CompatTableError(f"{name}:{policy.line}: policy '{field}' {complaint}")

    arch_rows = _rows(document, "architectures", name)
    _unique(arch_rows, "name")
    architectures = {row["name"]: Architecture(
        name=row["name"], label=row["label"], open_modules=row["open_modules"],
        last_branch=_none_if_current(row["last_branch"]), cuda_min=row["cuda_min"],
        cuda_max=_none_if_current(row["cuda_max"]), source=row["source"]) for row in arch_rows}

    gpu_rows = _rows(document, "gpus", name)
    _unique(gpu_rows, "pci_id")
    gpus: dict[str, GpuModel] = {}
    for row in gpu_rows:
        if row["architecture"] not in architectures:
            raise CompatTableError(f"{row['__where__']}: architecture {row['architecture']!r} is not "
                                   f"in section 'architectures' ({', '.join(architectures)})")
        gpus[row["pci_id"]] = GpuModel(row["pci_id"], row["model"], architectures[row["architecture"]],
                                       row["compute_capability"], row["source"])

    driver_rows = _rows(document, "cuda_min_driver", name)
    _unique(driver_rows, "cuda_major")
    release_rows = _rows(document, "cuda_releases", name)
    _unique(release_rows, "cuda")
    ngc_rows = _rows(document, "ngc_pytorch", name)
    _unique(ngc_rows, "tag")
    majors = {row["cuda_major"] for row in driver_rows}
    for row in [*release_rows, *ngc_rows]:
        if parse_version(row["cuda"])[0] not in majors:
            raise CompatTableError(f"{row['__where__']}: CUDA {row['cuda']} has no row in 'cuda_min_driver'")

    instance_rows = _rows(document, "ec2_instances", name)
    _unique(instance_rows, "type")
    for row in instance_rows:
        if row["pci_id"] not in gpus:
            raise CompatTableError(f"{row['__where__']}: pci_id {row['pci_id']} is not in section 'gpus'")

    return CompatTable(
        minimum_cuda=policy["minimum_cuda"],
        current_branch=policy["current_branch"],
        architectures=architectures,
        gpus=gpus,
        min_branch_by_cuda_major={row["cuda_major"]: row["min_branch"] for row in driver_rows},
        cuda_releases=tuple(sorted((CudaRelease(r["cuda"], r["driver"], r["source"]) for r in release_rows),
                                   key=lambda r: parse_version(r.cuda))),
        ngc_pytorch=tuple(sorted((NgcTag(r["tag"], r["cuda"], r["source"]) for r in ngc_rows),
                                 key=lambda r: parse_version(r.tag))),
        instances={r["type"]: InstanceType(r["type"], gpus[r["pci_id"]], r["count"], r["source"])
                   for r in instance_rows},
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
