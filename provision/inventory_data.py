"""Groups and hosts as Ansible's InventoryData holds them, filled by the INI and YAML readers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provision.errors import InventoryError

# Follows lib/ansible/inventory/data.py, group.py and host.py of ansible-core 2.19.


@dataclass
class Group:
    """One group: its direct hosts and child groups in the order written, its inline vars and priority."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1
    file_vars: dict[str, Any] = field(default_factory=dict)
    depth: int = 0


@dataclass
class InventoryData:
    """Every group and host of an inventory; `all` and `ungrouped` exist from the start, as in Ansible."""

    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_files: dict[str, str] = field(default_factory=dict)
    group_files: dict[str, str] = field(default_factory=dict)
    current_source: str = ""
    _direct: dict[str, set[str]] | None = None  # host -> its groups, built by reconcile() for fleets
    _members: dict[str, list[str]] = field(default_factory=dict)
    _in_group: dict[str, set[str]] = field(default_factory=dict)  # each group's hosts as a set: no list scans

    def __post_init__(self) -> None:
        if not self.groups:
            self.add_group("all")
            self.add_group("ungrouped")
            self.add_child("all", "ungrouped", "")

    def add_group(self, name: str) -> str:
        if not name:
            raise InventoryError("an empty group name")
        if name not in self.groups:
            self.groups[name] = Group(name)
            self.group_files[name] = self.current_source
        return name

    def add_host(self, name: str, group: str | None, port: int | None) -> None:
        """Add a host (and make it a member of `group`); a port given with its first mention sets ansible_port."""
        if name not in self.hosts:
            self.hosts[name] = {"ansible_port": port} if port else {}
            self.host_files[name] = self.current_source
        if group:
            members = self._in_group.get(group)
            if members is None:
                members = self._in_group[group] = set(self.groups[group].hosts)
            if name not in members:
                members.add(name)
                self.groups[group].hosts.append(name)

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        if key == "ansible_group_priority":
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(f"group {group}: ansible_group_priority must be a number, got {value!r}") from None
            return
        self.groups[group].vars[key] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        self.hosts[host][key] = value

    def add_child(self, parent: str, child: str, where: str) -> None:
        """Make `child` a child group of `parent`, refusing a loop as Ansible does."""
        if child == parent or parent in self.descendants(child):
            raise InventoryError(f"{where}: adding group '{child}' as a child of '{parent}' makes a loop")
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
        if parent not in self.groups[child].parents:
            self.groups[child].parents.append(parent)

    def descendants(self, group: str) -> set[str]:
        found, pending = set(), [group]
        while pending:
            for child in self.groups[pending.pop()].children:
                if child not in found:
                    found.add(child)
                    pending.append(child)
        return found

    def ancestors(self, group: str) -> set[str]:
        found, pending = set(), [group]
        while pending:
            for parent in self.groups[pending.pop()].parents:
                if parent not in found:
                    found.add(parent)
                    pending.append(parent)
        return found

    def reconcile(self) -> None:
        """Ansible's reconcile_inventory: every top group under `all`, hosts in no group in `ungrouped`; depths set."""
        for name in list(self.groups):
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name, "")
        self._set_depths()
        self._direct = {host: set() for host in self.hosts}
        for name, group in self.groups.items():
            for host in group.hosts:
                self._direct[host].add(name)
        ungrouped = self.groups["ungrouped"]
        was_ungrouped = set(ungrouped.hosts)
        for host, groups in self._direct.items():
            others = groups - {"all", "ungrouped"}
            if others:
                groups.discard("ungrouped")
            elif host not in was_ungrouped:
                groups.add("ungrouped")
        kept = [host for host in ungrouped.hosts if "ungrouped" in self._direct[host]]
        ungrouped.hosts = kept + [host for host in self.hosts if "ungrouped" in self._direct[host] and host not in was_ungrouped]
        self._in_group.pop("ungrouped", None)

    def _set_depths(self) -> None:
        """A group's depth is its longest path from `all` (what Group.add_child_group keeps up to date)."""
        memo: dict[str, int] = {}

        def depth(name: str) -> int:
            if name not in memo:
                parents = self.groups[name].parents
                memo[name] = 0 if not parents else 1 + max(depth(p) for p in parents)
            return memo[name]

        for name, group in self.groups.items():
            group.depth = depth(name)

    def direct_groups(self, host: str) -> set[str]:
        if self._direct is not None:
            return set(self._direct.get(host, ()))
        return {name for name, group in self.groups.items() if host in group.hosts}

    def groups_of(self, host: str) -> set[str]:
        """Every group `host` belongs to, directly or through a child group, `all` included."""
        found = set()
        for group in self.direct_groups(host):
            found |= {group} | self.ancestors(group)
        return found | {"all"}

    def members(self, group: str) -> list[str]:
        """The hosts of `group` and of its descendants, in Ansible's order (the group's own first)."""
        if self._direct is not None and group in self._members:
            return list(self._members[group])
        order, seen_groups, pending = [], set(), [group]
        while pending:  # Group._walk_relationship with preserve_ordering: breadth first, first seen wins
            name = pending.pop(0)
            if name in seen_groups:
                continue
            seen_groups.add(name)
            order.append(name)
            pending.extend(self.groups[name].children)
        hosts: dict[str, None] = {}
        for name in order:
            hosts.update(dict.fromkeys(self.groups[name].hosts))
        if self._direct is not None:
            self._members[group] = list(hosts)
        return list(hosts)

    def sorted_groups(self, names: set[str]) -> list[Group]:
        """Groups in Ansible's precedence order: depth, then ansible_group_priority, then name."""
        return sorted((self.groups[n] for n in names), key=lambda g: (g.depth, g.priority, g.name))
