"""group_vars/ and host_vars/ next to the inventory, found and read as Ansible's host_group_vars does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from provision.errors import InventoryError
from provision.yamlfile import display_path, load_yaml

# Follows lib/ansible/plugins/vars/host_group_vars.py and DataLoader.find_vars_files of
# ansible-core 2.19: NAME with no extension first, then NAME.yml, .yaml, .json; the first that
# exists wins; a directory is read whole (sorted, recursively; hidden files and backups skipped).
EXTENSIONS = ("", ".yml", ".yaml", ".json")


def vars_files(base: Path, name: str) -> list[Path]:
    """The files holding variables for `name` under `base` (group_vars/ or host_vars/), in load order."""
    if name.startswith("/") or not base.is_dir():
        return []
    for extension in EXTENSIONS:
        candidate = base / f"{name}{extension}"
        if candidate.is_dir():
            return _directory_files(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _directory_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_directory_files(entry))
        elif entry.is_file() and entry.suffix in EXTENSIONS:
            found.append(entry)
    return found


def load_vars(base: Path, name: str) -> dict[str, Any]:
    """Variables for `name` from its files under `base`, later files winning; empty files are skipped."""
    merged: dict[str, Any] = {}
    for file in vars_files(base, name):
        data = load_yaml(file, InventoryError)
        if data is None or data == {}:
            continue
        if not isinstance(data, dict):
            raise InventoryError(f"{display_path(file)}:1: a vars file must be a mapping of variables, got {type(data).__name__}")
        merged.update({str(key): value for key, value in data.items()})
    return merged
