"""The inventory: Ansible's YAML shape, group_vars/ and host_vars/, and how each host is reached."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import InventoryError
from provision.values import check_connection_variables, check_name
from provision.yamlfile import Located, display_path, load_yaml

GROUP_KEYS = {"hosts", "vars", "children"}


@dataclass
class Host:
    """One inventory host with its merged variables (all < groups < host) and how to reach it."""

    name: str
    vars: dict[str, Any]
    groups: list[str]

    def _first(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if self.vars.get(key) not in (None, ""):
                return self.vars[key]
        return default

    @property
    def address(self) -> str:
        return str(self._first("ansible_host", "host", default=self.name))

    @property
    def user(self) -> str | None:
        return self._first("ansible_user", "user")

    @property
    def port(self) -> int | None:
        port = self._first("ansible_port", "port")
        return int(port) if port is not None else None

    @property
    def ssh_key(self) -> str | None:
        return self._first("ssh_key", "ansible_ssh_private_key_file")

    @property
    def gateway(self) -> str | None:
        return self._first("gateway")

    @property
    def transport(self) -> str:
        return str(self._first("connection", "ansible_connection", default="ssh"))


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    """Hosts and groups read from one inventory directory (or file)."""

    source: str
    groups: dict[str, Group]
    host_vars: dict[str, dict[str, Any]]
    known_hosts: Path

    def host(self, name: str) -> Host:
        """The host called `name`, its variables merged; unknown names list the known ones."""
        if name not in self.host_vars:
            raise InventoryError(
                f"unknown host '{name}' in {self.source}; known hosts: {', '.join(sorted(self.host_vars)) or 'none'}"
            )
        groups = self._groups_of(name)
        merged: dict[str, Any] = {}
        for group in sorted(groups, key=lambda g: (self._depth(g), g)):
            merged.update(self.groups[group].vars)
        merged.update(self.host_vars[name])
        check_connection_variables(merged, name, InventoryError)
        return Host(name, merged, sorted(groups - {"all"}))

    def select(self, host: str | None = None, group: str | None = None) -> list[Host]:
        """The hosts named by --host (comma-separated) and/or --group, in inventory order."""
        if not host and not group:
            raise InventoryError("name the hosts to act on: --host NAME or --group NAME")
        names: list[str] = []
        for name in (host or "").split(","):
            if name.strip():
                self.host(name.strip())
                names.append(name.strip())
        if group:
            for name in group.split(","):
                names.extend(self._members(name.strip()))
        if not names:
            raise InventoryError(f"--group {group} selects no hosts in {self.source}")
        return [self.host(name) for name in dict.fromkeys(names)]

    def _members(self, group: str) -> list[str]:
        if group not in self.groups:
            raise InventoryError(
                f"unknown group '{group}' in {self.source}; known groups: {', '.join(sorted(self.groups))}"
            )
        found = list(self.groups[group].hosts)
        for child in self.groups[group].children:
            found.extend(self._members(child))
        return list(dict.fromkeys(found))

    def _groups_of(self, host: str) -> set[str]:
        direct = {name for name, group in self.groups.items() if host in group.hosts}
        found = set(direct) | {"all"}
        pending = list(direct)
        while pending:
            for parent in self.groups[pending.pop()].parents:
                if parent not in found:
                    found.add(parent)
                    pending.append(parent)
        return found

    def _depth(self, group: str) -> int:
        parents = self.groups[group].parents
        return 0 if not parents else 1 + min(self._depth(p) for p in parents)


def load_inventory(path: Path) -> Inventory:
    """Read an inventory directory (inventory.yml, group_vars/, host_vars/) or a single YAML file."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    file = path / "inventory.yml" if path.is_dir() else path
    if not file.exists():
        raise InventoryError(f"{display_path(file)}: no inventory file there")
    data = load_yaml(file, InventoryError)
    where = display_path(file)
    if not isinstance(data, dict) or set(data) != {"all"}:
        raise InventoryError(f"{where}:1: an inventory is a mapping with one key, all:")
    groups: dict[str, Group] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    _read_group("all", data["all"], None, groups, host_vars, where)
    for group in groups.values():
        group.vars = {**_vars_dir(directory / "group_vars", group.name), **group.vars}
    for name in host_vars:
        host_vars[name] = {**host_vars[name], **_vars_dir(directory / "host_vars", name)}
    return Inventory(where, groups, host_vars, directory / "known_hosts")


def _read_group(name: str, body: Any, parent: str | None, groups: dict, host_vars: dict, where: str) -> None:
    if body is None:
        body = Located()
    line = f"{where}:{getattr(body, 'line', 0)}"
    if not isinstance(body, dict):
        raise InventoryError(f"{line}: group '{name}' must be a mapping of hosts:, vars:, children:")
    unknown = set(body) - GROUP_KEYS
    if unknown:
        raise InventoryError(
            f"{line}: group '{name}' has unknown key '{sorted(unknown)[0]}' (groups take hosts:, vars:, children:)"
        )
    check_name("group", name, line, InventoryError)
    group = groups.setdefault(name, Group(name))
    if parent and parent not in group.parents:
        group.parents.append(parent)
    group.vars.update(_mapping(body.get("vars"), f"group '{name}' vars", line))
    for host, hvars in _mapping(body.get("hosts"), f"group '{name}' hosts", line).items():
        host = str(host)
        host_line = getattr(body.get("hosts"), "key_lines", {}).get(host) or getattr(body, "line", 0)
        check_name("host", host, f"{where}:{host_line}", InventoryError)
        hvars = _mapping(hvars, f"host '{host}'", f"{where}:{getattr(hvars, 'line', getattr(body, 'line', 0))}")
        host_vars.setdefault(host, {}).update(hvars)
        if host not in group.hosts:
            group.hosts.append(host)
    for child, child_body in _mapping(body.get("children"), f"group '{name}' children", line).items():
        if str(child) == "all":
            raise InventoryError(f"{line}: group 'all' cannot be a child of '{name}'")
        if str(child) in _ancestors(name, groups):
            raise InventoryError(f"{line}: group '{child}' is its own ancestor")
        if str(child) not in group.children:
            group.children.append(str(child))
        _read_group(str(child), child_body, name, groups, host_vars, where)


def _ancestors(name: str, groups: dict) -> set[str]:
    found, pending = {name}, [name]
    while pending:
        for parent in groups[pending.pop()].parents:
            if parent not in found:
                found.add(parent)
                pending.append(parent)
    return found


def _mapping(value: Any, what: str, line: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"{line}: {what} must be a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _vars_dir(base: Path, name: str) -> dict[str, Any]:
    """Variables from base/NAME.yml (or .yaml) and every YAML file in base/NAME/, in name order."""
    files = [base / f"{name}.yml", base / f"{name}.yaml"]
    if (base / name).is_dir():
        files += sorted(p for p in (base / name).iterdir() if p.suffix in (".yml", ".yaml"))
    merged: dict[str, Any] = {}
    for file in files:
        if file.is_file():
            data = load_yaml(file, InventoryError)
            if data is None:
                continue
            if not isinstance(data, dict):
                raise InventoryError(f"{display_path(file)}:1: a vars file must be a mapping")
            merged.update(data)
    return merged
