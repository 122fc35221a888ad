"""Roles as folders of data: tasks, defaults, handlers, meta and templates, validated when loaded."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import RoleError
from provision.ops import OPERATIONS, Operation
from provision.values import check_declared_kinds, check_raw_shell
from provision.yamlfile import display_path, load_yaml

TASK_KEYS = {"name", "notify", "when"}


@dataclass(frozen=True)
class Task:
    """One task of a role: an operation, its unrendered arguments, and where it was written."""

    role: str
    name: str
    op: Operation
    args: Any
    where: str
    notify: tuple[str, ...] = ()
    when: str | None = None

    @property
    def handler_key(self) -> str:
        """A stable shell-safe name for this task when it is a handler."""
        return "h_" + hashlib.sha1(f"{self.role}/{self.name}".encode()).hexdigest()[:12]


@dataclass
class Role:
    name: str
    path: Path
    defaults: dict[str, Any]
    tasks: list[Task]
    handlers: list[Task]
    dependencies: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def shown_path(self) -> str:
        return display_path(self.path)

    @functools.cached_property
    def templates_dir(self) -> str:
        return str(self.path / "templates")


def available_roles(roles_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(roles_dir).iterdir() if p.is_dir() and (p / "tasks.yml").exists())


class RoleLibrary:
    """The roles of one roles directory for one run: each role's files read and validated once, however many hosts use it."""

    def __init__(self, roles_dir: Path):
        self.roles_dir = Path(roles_dir)
        self.loads = 0  # roles read from disk (what the fleet-scale tests count)
        self._known: list[str] | None = None
        self._roles: dict[str, Role] = {}
        self._sets: dict[tuple[str, ...], list[Role]] = {}

    @property
    def known(self) -> list[str]:
        if self._known is None:
            self._known = available_roles(self.roles_dir)
        return self._known

    def role(self, name: str) -> Role:
        if name not in self._roles:
            self.loads += 1
            self._roles[name] = _load_role(self.roles_dir / name)
        return self._roles[name]

    def load(self, names: list[str]) -> list[Role]:
        """load_roles for these names, computed once per distinct list of names."""
        key = tuple(names)
        if key not in self._sets:
            self._sets[key] = load_roles(self.roles_dir, names, self)
        return self._sets[key]


def load_roles(roles_dir: Path, names: list[str], library: RoleLibrary | None = None) -> list[Role]:
    """The named roles and their dependencies, dependencies first, each once; handlers resolved."""
    roles_dir = Path(roles_dir)
    library = library or RoleLibrary(roles_dir)
    known = library.known
    ordered: dict[str, Role] = {}

    def visit(name: str, asked_by: str, chain: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in chain:
            raise RoleError(f"role dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in known:
            raise RoleError(f"unknown role '{name}' ({asked_by}); roles in {display_path(roles_dir)}/: {', '.join(known)}")
        role = library.role(name)
        for dependency in role.dependencies:
            visit(dependency, f"a dependency in {role.shown_path}/meta.yml", chain + (name,))
        ordered[name] = role

    for name in names:
        visit(name, "asked for", ())
    roles = list(ordered.values())
    _check_notify(roles)
    return roles


def _load_role(path: Path) -> Role:
    shown = display_path(path)
    defaults = _optional(path / "defaults.yml", dict) or {}
    meta = _optional(path / "meta.yml", dict) or {}
    dependencies = meta.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise RoleError(f"{shown}/meta.yml:{getattr(meta, 'line', 1)}: dependencies must be a list of role names")
    kinds = check_declared_kinds(meta.get("kinds"), defaults, f"{shown}/meta.yml", RoleError)
    tasks = [_task(path.name, item, f"{shown}/tasks.yml") for item in _optional(path / "tasks.yml", list) or []]
    handlers = [_task(path.name, item, f"{shown}/handlers.yml") for item in _optional(path / "handlers.yml", list) or []]
    seen: set[str] = set()
    for handler in handlers:
        if handler.name in seen:
            raise RoleError(f"{handler.where}: a second handler named '{handler.name}'")
        seen.add(handler.name)
    return Role(path.name, path, dict(defaults), tasks, handlers, list(dependencies), kinds)


def _optional(file: Path, kind: type) -> Any:
    if not file.exists():
        return None
    data = load_yaml(file, RoleError)
    if data is not None and not isinstance(data, kind):
        raise RoleError(f"{display_path(file)}:1: must be a {'mapping' if kind is dict else 'list'}")
    return data


def _task(role: str, item: Any, file: str) -> Task:
    line = getattr(item, "line", "?")
    if not isinstance(item, dict):
        raise RoleError(f"{file}:{line}: a task must be a mapping, got {item!r}")
    name = str(item.get("name") or "")
    where = f"{file}:{line} (task '{name}')" if name else f"{file}:{line}"
    if not name:
        raise RoleError(f"{where}: every task needs a name")
    ops = [key for key in item if key not in TASK_KEYS]
    unknown = [key for key in ops if key not in OPERATIONS]
    if unknown:
        raise RoleError(f"{where}: unknown operation '{unknown[0]}' (operations: {', '.join(sorted(OPERATIONS))})")
    if len(ops) != 1:
        raise RoleError(f"{where}: a task names exactly one operation, found {len(ops)}: {', '.join(ops) or 'none'}")
    op = OPERATIONS[ops[0]]
    op.validate(item[ops[0]], where)
    check_raw_shell(item[ops[0]], where, RoleError)
    notify = item.get("notify") or []
    notify = [notify] if isinstance(notify, str) else notify
    if not isinstance(notify, list):
        raise RoleError(f"{where}: notify must be a handler name or a list of them")
    return Task(role, name, op, item[ops[0]], where, tuple(str(n) for n in notify), item.get("when"))


def _check_notify(roles: list[Role]) -> None:
    """Every notify names a handler of a loaded role: checked now, before any connection."""
    handlers = {h.name for role in roles for h in role.handlers}
    for role in roles:
        for task in role.tasks:
            for name in task.notify:
                if name not in handlers:
                    raise RoleError(
                        f"{task.where}: notify '{name}' matches no handler; handlers: {', '.join(sorted(handlers)) or 'none'}"
                    )


def find_handler(roles: list[Role], name: str) -> Task:
    for role in roles:
        for handler in role.handlers:
            if handler.name == name:
                return handler
    raise RoleError(f"no handler named '{name}'")


@functools.lru_cache(maxsize=8)
def _role_prefixes(roles_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Each role's variable prefix with the variables its defaults define (read once per run)."""
    prefixes = {}
    for name in available_roles(roles_dir):
        defaults = _optional(roles_dir / name / "defaults.yml", dict) or {}
        prefixes[name + "_"] = (name, sorted(defaults))
    return prefixes


def check_variable_names(roles_dir: Path, variables: dict[str, Any], source: str) -> None:
    """Refuse a variable that carries a role's prefix but that the role does not define (a typo)."""
    prefixes = _role_prefixes(Path(roles_dir))
    for variable in variables:
        matches = [p for p in prefixes if variable.startswith(p)]
        if not matches:
            continue
        role, defined = prefixes[max(matches, key=len)]
        if variable not in defined:
            raise RoleError(
                f"unknown variable '{variable}' ({source}): role {role} defines {', '.join(defined) or 'no variables'}"
            )
