"""The shape of gpu_compat.yml: each section's fields and their checks, and the row validator."""
from __future__ import annotations

import re
from typing import Any, Callable

from provision.errors import CompatTableError

Check = Callable[[Any], "str | None"]

_PCI_ID = re.compile(r"10de:[0-9a-f]{4}"), "an NVIDIA PCI id such as \"10de:1db1\" (lower case)"
_VERSION = re.compile(r"\d+\.\d+"), "a version such as \"12.9\""
_DRIVER = re.compile(r"\d+\.\d+(\.\d+)?"), "a driver version such as \"575.51.03\""
_WORD = re.compile(r"[a-z]+"), "a lower-case word such as volta"
_TAG = re.compile(r"\d\d\.\d\d"), "a tag such as \"25.06\""
_INSTANCE = re.compile(r"[a-z0-9-]+\.[a-z0-9]+"), "an instance type such as p3.2xlarge"
_MONTH = re.compile(r"\d{4}-\d{2}"), "a month such as \"2028-06\""
_KEY_FILE = re.compile(r"[0-9A-Fa-f]{8}\.pub"), "a key file name such as 3bf863cc.pub"


def text(pattern: re.Pattern[str] | None = None, shape: str = "") -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty string (quote versions: \"12.9\")"
        if pattern and not pattern.fullmatch(value):
            return f"{value!r} is not {shape}"
        return None
    return check


def integer(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"


def one_of(*allowed: str) -> Check:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


def current_or(check: Check) -> Check:
    return lambda value: None if value == "current" else check(value)


def null_or(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def list_of(check: Check) -> Check:
    def checked(value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return "must be a non-empty list"
        return next((f"item {n}: {c}" for n, item in enumerate(value, 1) if (c := check(item))), None)
    return checked


ARCHES = ("amd64", "arm64")

SECTIONS: dict[str, dict[str, Check]] = {
    "architectures": {"name": text(*_WORD), "label": text(), "source": text(),
                      "open_modules": one_of("no", "yes", "required"),
                      "last_branch": current_or(integer),
                      "cuda_min": null_or(text(*_VERSION)),
                      "cuda_max": current_or(text(*_VERSION)),
                      "compute_capabilities": list_of(text(*_VERSION))},
    "gpus": {"pci_id": text(*_PCI_ID), "model": text(), "architecture": text(),
             "compute_capability": text(*_VERSION), "source": text()},
    "driver_branches": {"branch": integer, "designation": one_of("long-term", "production", "new-feature"),
                        "end_of_life": null_or(text(*_MONTH)), "open_only": flag, "source": text()},
    "cuda_min_driver": {"cuda_major": integer, "min_branch": integer, "source": text()},
    "cuda_releases": {"cuda": text(*_VERSION), "driver": null_or(text(*_DRIVER)), "source": text()},
    "ngc_pytorch": {"tag": text(*_TAG), "cuda": text(*_VERSION), "source": text()},
    "ubuntu_releases": {"version": text(*_VERSION), "codename": text(*_WORD),
                        "driver_packages": list_of(text(re.compile(r"\d{3}(-server)?"), "a name such as 580-server")),
                        "cuda_repo": null_or(text(re.compile(r"ubuntu\d{4}"), "a folder such as ubuntu2404")),
                        "cuda_repo_key": null_or(text(*_KEY_FILE)), "tmp_tmpfs": flag, "source": text()},
    "ec2_instances": {"type": text(*_INSTANCE), "pci_id": text(*_PCI_ID), "count": integer, "source": text()},
}
OPTIONAL: dict[str, dict[str, Check]] = {
    "gpus": {"min_driver": text(*_DRIVER), "cpu_arch": one_of(*ARCHES), "open_modules": one_of("required")},
    "ec2_instances": {"arch": one_of(*ARCHES)},
}
ANY_ROW = {"checked": flag, "note": text()}
POLICY = {"minimum_cuda": text(*_VERSION), "as_of": text(*_MONTH),
          "ngc_min_compute_capability": text(*_VERSION), "source": text()}
_KEYS = ("pci_id", "name", "type", "tag", "cuda", "cuda_major", "branch", "version")


def rows(document: dict[str, Any], section: str, name: str) -> list[dict[str, Any]]:
    """The rows of one section, each checked against its fields; raises naming the bad row."""
    found = document.get(section)
    if not isinstance(found, list) or not found:
        raise CompatTableError(f"{name}: section '{section}' is missing or not a list of rows")
    fields, optional = SECTIONS[section], {**OPTIONAL.get(section, {}), **ANY_ROW}
    for number, row in enumerate(found, start=1):
        if not isinstance(row, dict):
            raise CompatTableError(f"{name}: {section} row {number}: is not a mapping")
        where = f"{name}:{row.line}: {section} row {number}"
        key = next((str(row[k]) for k in _KEYS if k in row), None)
        if key is not None:
            where += f" ({key})"
        unknown = sorted(set(row) - set(fields) - set(optional))
        if unknown:
            raise CompatTableError(f"{where}: unknown field(s) {', '.join(unknown)}")
        for field, check in fields.items():
            if field not in row:
                raise CompatTableError(f"{where}: missing '{field}'")
            if complaint := check(row[field]):
                raise CompatTableError(f"{where}: '{field}' {complaint}")
        for field, check in optional.items():
            if field in row and (complaint := check(row[field])):
                raise CompatTableError(f"{where}: '{field}' {complaint}")
        if row.get("checked") is False and "note" not in row:
            raise CompatTableError(f"{where}: 'checked: false' needs a 'note' saying what the source is and why "
                                   f"it was not confirmed")
        row["__where__"] = where
    return found


def unique(found: list[dict[str, Any]], field: str) -> None:
    seen: set[Any] = set()
    for row in found:
        if row[field] in seen:
            raise CompatTableError(f"{row['__where__']}: duplicate {field} {row[field]!r}")
        seen.add(row[field])


def check_policy(policy: Any, name: str) -> None:
    if not isinstance(policy, dict):
        raise CompatTableError(f"{name}: section 'policy' is missing")
    for field, check in POLICY.items():
        complaint = check(policy.get(field)) if field in policy else "is missing"
        if complaint:
            raise CompatTableError(f"{name}:{policy.line}: policy '{field}' {complaint}")
