"""Ansible's INI inventory format: [group], host lines with key=value, [group:children], [group:vars]."""
from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from provision.errors import InventoryError
from provision.inventory_data import InventoryData
from provision.inventory_ranges import expand_host_pattern

# Follows lib/ansible/plugins/inventory/ini.py of ansible-core 2.19: the same section and group
# name patterns, shlex for host lines, ast.literal_eval for every value, pending declarations.
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:\#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:\#.*)?$")
_COMMENT_MARKERS = (";", "#")


def parse_value(text: str) -> Any:
    """A value as Ansible's INI reader makes it: a Python literal when it is one, else the text itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, complex):
        return str(value)
    return value


def parse_ini(text: str, where: str, data: InventoryData) -> None:
    """Read an INI inventory into `data`; a bad line raises InventoryError naming file and line."""
    pending: dict[str, dict] = {}
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        at = f"{where}:{number}"
        if not line or line[0] in _COMMENT_MARKERS:
            continue
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(f"{at}: section [{line.strip('[]')}] has unknown type '{state}' (hosts, children or vars)")
            if group not in data.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"line": at, "state": state}
                data.add_group(group)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    _add_pending_children(group, pending, data)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(f"{at}: invalid section {line!r}: no spaces or other characters than name[:children|:vars]")
        if state == "hosts":
            _host_line(line, at, group, data)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise InventoryError(f"{at}: expected key=value in [{group}:vars], got {line!r}")
            data.set_group_var(group, key.strip(), parse_value(value.strip()))
        else:
            found = _GROUP_NAME.match(line)
            if not found:
                raise InventoryError(f"{at}: expected a group name in [{group}:children], got {line!r}")
            child = found.group(1)
            if child in data.groups:
                data.add_child(group, child, at)
            else:
                pending.setdefault(child, {"line": at, "state": "children", "parents": []})["parents"].append(group)
    for name, declaration in pending.items():
        if declaration["state"] == "vars":
            raise InventoryError(f"{declaration['line']}: section [{name}:vars] is for a group that is never declared")
        raise InventoryError(
            f"{declaration['line']}: section [{declaration['parents'][-1]}:children] names group '{name}', which is never declared")


def _add_pending_children(group: str, pending: dict, data: InventoryData) -> None:
    for parent in pending[group]["parents"]:
        data.add_child(parent, group, pending[group]["line"])
        if parent in pending and pending[parent]["state"] == "children":
            _add_pending_children(parent, pending, data)
    del pending[group]


def _host_line(line: str, at: str, group: str, data: InventoryData) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{at}: cannot read host line {line!r}: {exc}") from None
    if not tokens:
        return
    pattern = tokens[0]
    names, port = expand_host_pattern(pattern, at)
    if pattern.strip().endswith(":") and port is None:
        raise InventoryError(f"{at}: host {pattern!r} ends in ':' (reserved for a port)")
    if any(name.strip() == "---" for name in names):
        raise InventoryError(f"{at}: host '---' (is this a YAML file?)")
    variables = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise InventoryError(f"{at}: expected key=value after host {pattern}, got {token!r}")
        variables[key] = parse_value(value)
    for name in names:
        data.add_host(name, group, port)
        for key, value in variables.items():
            data.set_host_var(name, key, value)
