"""The inventory: Ansible's INI and YAML formats, group_vars/ and host_vars/, Ansible's precedence, hosts' reach."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

from provision.connection_vars import (LOGIN_PASSWORD_VARS, Become, SshArgs, become_settings, connection_type,
                                       parse_ssh_args)
from provision.errors import InventoryError
from provision.values import check_connection_variables, check_name
from provision.inventory_data import InventoryData
from provision.inventory_ini import parse_ini
from provision.inventory_vars import load_vars
from provision.inventory_yaml import is_yaml_inventory, read_yaml_inventory
from provision.yamlfile import display_path, parse_yaml

# Files of an inventory directory that are not inventory sources: Ansible's INVENTORY_IGNORE_EXTS
# (lib/ansible/config/base.yml, constants.REJECT_EXTS) and our own known_hosts.
IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
IGNORED_NAMES = {"group_vars", "host_vars", "vars_plugins", "known_hosts"}
YAML_EXTENSIONS = (".yml", ".yaml", ".json")
STRICT_SUFFIXES = ("", ".yml", ".yaml", ".ini")  # in a directory, files that must read as an inventory
_IP_ADDRESS = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$|:")


@dataclass
class Host:
    """One inventory host with its merged variables and the groups it belongs to (`all` left out)."""

    name: str
    vars: dict[str, Any]
    groups: list[str]
    magic: dict[str, Any] = field(default_factory=dict)

    def _first(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if self.vars.get(key) not in (None, ""):
                return self.vars[key]
        return default

    @property
    def ssh_args(self) -> SshArgs:
        """What ansible_ssh_common_args / _extra_args / _args ask for (refused in one line if we cannot honour it)."""
        return parse_ssh_args(self.vars, self.name)

    @property
    def address(self) -> str:
        return str(self._first("ansible_host", "ansible_ssh_host", "host", default=None) or self.ssh_args.hostname
                   or self.name)

    @property
    def user(self) -> str | None:
        user = self._first("ansible_user", "ansible_ssh_user", "user") or self.ssh_args.user
        return str(user) if user is not None else None

    @property
    def port(self) -> int | None:
        port = self._first("ansible_port", "ansible_ssh_port", "port")
        if port is None:
            return self.ssh_args.port
        try:
            return int(port)
        except (TypeError, ValueError):
            raise InventoryError(f"host {self.name}: port {port!r} is not a number") from None

    @property
    def ssh_key(self) -> str | None:
        return self._first("ssh_key", "ansible_ssh_private_key_file", "ansible_private_key_file") or self.ssh_args.identity

    @property
    def gateway(self) -> str | None:
        return self._first("gateway") or self.ssh_args.proxy_jump

    @property
    def proxy_command(self) -> str | None:
        return self.ssh_args.proxy_command

    @property
    def login_password(self) -> Any:
        return self._first(*LOGIN_PASSWORD_VARS)

    @property
    def transport(self) -> str:
        return connection_type(self.vars, self.name)

    @property
    def become(self) -> Become:
        return become_settings(self.vars, self.name)

    def check_connection(self) -> None:
        """Refuse, before any connection, connection and become settings we cannot honour."""
        if self.transport == "local":
            return
        self.port, self.address, self.become  # noqa: B018  (each raises InventoryError when malformed)
        if self._first("gateway") and self.proxy_command:
            raise InventoryError(f"host {self.name}: both a gateway ({self.gateway}) and an ssh ProxyCommand: keep one")
        password = self.become.password
        if isinstance(password, str) and ("\n" in password or "\r" in password):
            raise InventoryError(f"host {self.name}: a become password cannot hold a line break")


@dataclass
class Inventory:
    """Hosts and groups read from an inventory file or directory, with the vars files beside it."""

    source: str
    data: InventoryData
    known_hosts: Path
    basedirs: list[Path] = field(default_factory=list)
    _groups: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def groups(self):
        return self.data.groups

    @property
    def host_vars(self) -> dict[str, dict[str, Any]]:
        """Each host's own inline variables, by name (every host of the inventory is a key)."""
        return self.data.hosts

    def host(self, name: str) -> Host:
        """The host called `name`, its variables merged in Ansible's order; unknown names list the known ones."""
        if name not in self.data.hosts:
            raise InventoryError(
                f"unknown host '{name}' in {self.source}; known hosts: {', '.join(sorted(self.data.hosts)) or 'none'}"
            )
        member_of = self.data.groups_of(name)
        host = Host(name, self.merged_vars(name), sorted(member_of - {"all"}), self.magic_vars(name, member_of))
        check_connection_variables(host.vars, name, InventoryError)
        host.check_connection()
        return host

    def merged_vars(self, name: str) -> dict[str, Any]:
        """Ansible's precedence (VariableManager.get_vars): all's inline vars < other groups' inline vars
        (by depth, ansible_group_priority, name) < group_vars/all < group_vars/GROUP (same order) <
        the host's inline vars < host_vars/HOST."""
        groups = self.data.sorted_groups(self.data.groups_of(name) - {"all"})
        merged = dict(self.data.groups["all"].vars)
        for group in groups:
            merged.update(group.vars)
        merged.update(self.data.groups["all"].file_vars)
        for group in groups:
            merged.update(group.file_vars)
        merged.update(self.data.hosts[name])
        merged.update(self._host_file_vars(name))
        return merged

    def _host_file_vars(self, name: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for base in self.basedirs:
            merged.update(load_vars(base / "host_vars", name))
        return merged

    def magic_vars(self, name: str, member_of: set[str]) -> dict[str, Any]:
        """Ansible's magic variables for a host that templates may use (hostvars is added by the compiler)."""
        source = self.data.host_files.get(name) or ""
        short = name if _IP_ADDRESS.search(name) else name.split(".")[0]
        return {
            "inventory_hostname": name,
            "inventory_hostname_short": short,
            "group_names": sorted(member_of - {"all"}),
            "groups": self._groups_map(),
            "inventory_file": source,
            "inventory_dir": str(Path(source).parent) if source else "",
            "hostvars": HostVars(self),
        }

    def _groups_map(self) -> dict[str, list[str]]:
        """Ansible's `groups`: every group's hosts (worked out once per inventory, shared by its hosts)."""
        if self._groups is None:
            self._groups = {group: self.data.members(group) for group in self.data.groups}
        return self._groups

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
        if group not in self.data.groups:
            raise InventoryError(
                f"unknown group '{group}' in {self.source}; known groups: {', '.join(sorted(self.data.groups))}"
            )
        return self.data.members(group)


class HostVars(Mapping):
    """Ansible's `hostvars`: every host's merged variables, worked out only when a template asks."""

    def __init__(self, inventory: Inventory):
        self._inventory = inventory

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self._inventory.data.hosts:
            raise KeyError(name)
        return self._inventory.merged_vars(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._inventory.data.hosts)

    def __len__(self) -> int:
        return len(self._inventory.data.hosts)


def inventory_sources(path: Path) -> list[Path]:
    """The files Ansible reads for `path`: the file itself, or a directory's files in name order.

    Unlike Ansible, subdirectories are not read as more inventory (they hold our tools' files).
    """
    if not path.is_dir():
        return [path]
    return [entry for entry in sorted(path.iterdir(), key=lambda p: p.name)
            if entry.is_file() and not entry.name.startswith(".") and entry.name not in IGNORED_NAMES
            and not entry.name.endswith(IGNORED_EXTENSIONS)]


def load_inventory(path: Path) -> Inventory:
    """Read an inventory file (INI or YAML) or a directory of them, with group_vars/ and host_vars/ beside each."""
    path = Path(path)
    if not path.exists():
        raise InventoryError(f"{display_path(path)}: no inventory there")
    sources = inventory_sources(path)
    if not sources:
        raise InventoryError(f"{display_path(path)}: no inventory file there (INI or YAML)")
    data = InventoryData()
    for source in sources:
        data.current_source = str(source.resolve())
        if path.is_dir() and source.suffix not in STRICT_SUFFIXES and not _is_inventory(source):
            continue  # Ansible warns that it cannot parse such a file and goes on; so do we, quietly
        read_source(source, data)
    data.reconcile()
    for group in data.groups:
        check_name("group", group, _name_origin(group, data.group_files.get(group)), InventoryError)
    for host in data.hosts:
        check_name("host", host, _name_origin(host, data.host_files.get(host)), InventoryError)
    basedir = path if path.is_dir() else path.parent
    inventory = Inventory(display_path(sources[0]) if len(sources) == 1 else display_path(path), data,
                          basedir / "known_hosts", [basedir])
    for group in data.groups.values():
        for base in inventory.basedirs:
            group.file_vars.update(load_vars(base / "group_vars", group.name))
    return inventory


def _name_origin(name: str, source: str | None) -> str:
    """Where a host or group name was written: its file and line when the reader kept them, else its file."""
    where = getattr(name, "where", "")
    return where or (display_path(Path(source)) if source else "inventory")


def _is_inventory(file: Path) -> bool:
    """Whether a file of an inventory directory reads as an inventory (INI or YAML) at all."""
    if not _looks_like_text(file):
        return False  # an image or archive left beside the inventory: not worth parsing
    try:
        read_source(file, InventoryData())
    except InventoryError:
        return False
    return True


def _looks_like_text(file: Path, longest_line: int = 65536) -> bool:
    """Text without NUL bytes whose lines are of a length people write (parsing a huge binary as INI takes minutes)."""
    try:
        with file.open("rb") as stream:
            for line in stream:
                if len(line) > longest_line or b"\0" in line:
                    return False
    except OSError:
        return True  # let read_source say why it cannot be read
    return True


def read_source(file: Path, data: InventoryData) -> None:
    """One inventory file: YAML for .yml/.yaml/.json, INI for .ini, and for any other name whichever it is."""
    where = display_path(file)
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if file.suffix in YAML_EXTENSIONS:
        parsed = parse_yaml(text, where, InventoryError)
        if parsed is None:
            raise InventoryError(f"{where}:1: an empty inventory file")
        read_yaml_inventory(parsed, where, data)
        return
    if file.suffix != ".ini":
        try:
            parsed = parse_yaml(text, where, InventoryError)
        except InventoryError:
            parsed = None
        if is_yaml_inventory(parsed):
            read_yaml_inventory(parsed, where, data)
            return
    parse_ini(text, where, data)
