"""Ansible's YAML inventory format: top-level groups (`all:` or others) with hosts:, vars:, children:."""
from __future__ import annotations

from typing import Any

from provision.errors import InventoryError
from provision.inventory_data import InventoryData
from provision.inventory_ranges import expand_host_pattern

# Follows lib/ansible/plugins/inventory/yaml.py of ansible-core 2.19, but refuses (with file and
# line) what Ansible only warns about and skips: an unknown key in a group is most often a typo.
GROUP_KEYS = ("hosts", "vars", "children")


def is_yaml_inventory(data: Any) -> bool:
    """Whether parsed YAML has an inventory's shape: a mapping of group names to mappings (or nothing)."""
    return isinstance(data, dict) and bool(data) and "plugin" not in data and all(
        isinstance(body, dict) or body is None for body in data.values())


def read_yaml_inventory(data: Any, where: str, inventory: InventoryData) -> None:
    """Fill `inventory` from a parsed YAML inventory; a malformed one raises naming file and line."""
    if not isinstance(data, dict) or not data:
        raise InventoryError(f"{where}:1: a YAML inventory is a mapping of groups (all:, or others beside it)")
    if "plugin" in data:
        raise InventoryError(f"{where}:1: an inventory plugin's configuration (plugin: {data['plugin']}), not an inventory")
    for name, body in data.items():
        _read_group(str(name), body, where, inventory, _line(data, where))


def _line(node: Any, where: str) -> str:
    return f"{where}:{getattr(node, 'line', 1)}"


def _read_group(name: str, body: Any, where: str, inventory: InventoryData, line: str) -> str:
    line = _line(body, where) if body is not None and hasattr(body, "line") else line
    if body is not None and not isinstance(body, dict):
        raise InventoryError(f"{line}: group '{name}' must be a mapping of hosts:, vars:, children:")
    inventory.add_group(name)
    body = body or {}
    unknown = [key for key in body if key not in GROUP_KEYS]
    if unknown:
        raise InventoryError(f"{line}: group '{name}' has unknown key '{unknown[0]}' (groups take hosts:, vars:, children:)")
    sections = {key: _section(body[key], key, name, line) for key in body}
    for key, section in sections.items():
        if key == "vars":
            for variable, value in section.items():
                inventory.set_group_var(name, str(variable), value)
        elif key == "children":
            for child, child_body in section.items():
                if not isinstance(child, str):
                    raise InventoryError(f"{line}: group name {child!r} under '{name}' must be a string")
                _read_group(child, child_body, where, inventory, line)
                inventory.add_child(name, child, line)
        else:
            for pattern, host_vars in section.items():
                _read_host(pattern, host_vars, name, where, inventory, line)
    return name


def _section(value: Any, key: str, group: str, line: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: None}
    if not isinstance(value, dict):
        raise InventoryError(f"{line}: group '{group}' {key}: must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _read_host(pattern: Any, host_vars: Any, group: str, where: str, inventory: InventoryData, line: str) -> None:
    if not isinstance(pattern, str):
        raise InventoryError(f"{line}: host {pattern!r} in group '{group}' must be a string (quote numbers)")
    at = _line(host_vars, where) if hasattr(host_vars, "line") else line
    if host_vars is not None and not isinstance(host_vars, dict):
        raise InventoryError(f"{at}: host '{pattern}' must be a mapping of variables, got {type(host_vars).__name__} {host_vars!r}")
    names, port = expand_host_pattern(pattern, at)
    for host in names:
        inventory.add_host(host, group, port)
        for key, value in (host_vars or {}).items():
            inventory.set_host_var(host, str(key), value)
