"""`invoke inventory`: the inventory as ansible-inventory shows it (--list, --host, --graph)."""
from __future__ import annotations

import json
from typing import Any

from provision.connection_vars import BECOME_PASSWORD_VARS, LOGIN_PASSWORD_VARS
from provision.inventory import Inventory
from provision.secrets import REDACTED, Secret

# Follows lib/ansible/cli/inventory.py of ansible-core 2.19 (json_inventory, _graph_group, dump).
SECRET_KEYS = {"secret_env", "secret_file", "secret_ssm"}
PASSWORD_VARS = set(BECOME_PASSWORD_VARS) | set(LOGIN_PASSWORD_VARS)


def inventory_list(inventory: Inventory) -> dict[str, Any]:
    """ansible-inventory --list: groups with their hosts and children, every host's merged vars in _meta."""
    groups = inventory.data.groups
    results: dict[str, Any] = {}
    seen: set[str] = set()

    def format_group(name: str) -> None:
        entry: dict[str, Any] = {}
        if name != "all":
            entry["hosts"] = list(groups[name].hosts)
        entry["children"] = list(groups[name].children)
        results[name] = entry
        for child in groups[name].children:
            if child not in seen:
                format_group(child)
                seen.add(child)
        for key in ("hosts", "children"):
            if not entry.get(key, True):
                del entry[key]
        if not entry:
            del results[name]

    format_group("all")
    hostvars = {}
    for host in inventory.data.members("all"):
        merged = inventory.merged_vars(host)
        if merged:
            hostvars[host] = merged
    results["_meta"] = {"hostvars": hostvars, "profile": "inventory_legacy"}
    return results


def host_view(inventory: Inventory, name: str) -> dict[str, Any]:
    """ansible-inventory --host NAME: the host's merged variables, every secret shown as ***."""
    return {key: REDACTED if key in PASSWORD_VARS else _redacted(value) for key, value in inventory.host(name).vars.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, Secret) or (isinstance(value, dict) and SECRET_KEYS & set(value)):
        return REDACTED
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def graph(inventory: Inventory, start: str = "all") -> str:
    """ansible-inventory --graph: the group tree with each group's hosts."""
    groups = inventory.data.groups
    if start not in groups:
        from provision.errors import InventoryError
        raise InventoryError(f"--graph: no group '{start}' in {inventory.source}; groups: {', '.join(sorted(groups))}")
    lines: list[str] = []

    def named(text: str, depth: int) -> str:
        return "  |" * depth + "--" + text if depth else text

    def walk(group: str, depth: int) -> None:
        lines.append(named(f"@{group}:", depth))
        for child in groups[group].children:
            walk(child, depth + 1)
        if group != "all":
            lines.extend(named(host, depth + 1) for host in groups[group].hosts)

    walk(start, 0)
    return "\n".join(lines)


def dump(data: Any) -> str:
    """JSON as ansible-inventory prints it: sorted keys, four-space indent."""
    return json.dumps(data, sort_keys=True, indent=4, ensure_ascii=False, default=str)
