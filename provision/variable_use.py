"""Which variables the selected roles use: only those are rendered and only their secrets are read."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from provision.roles import Role

if TYPE_CHECKING:
    import jinja2

# Names the engine reads from a host's variables itself, besides what tasks and templates name.
ENGINE_NAMES = {"apt_lock_timeout"}


@functools.lru_cache(maxsize=1)
def _parser() -> jinja2.Environment:
    """Parsing only: names found do not depend on filters or loaders (made when first needed, as jinja2 loads then)."""
    import jinja2

    return jinja2.Environment()


def names_in(env: jinja2.Environment, value: Any, expression: bool = False) -> set[str]:
    """The variable names a value's templates (or a `when:` expression) refer to; none for plain data."""
    found: set[str] = set()
    for text in _strings(value):
        if expression or "{{" in text or "{%" in text:
            found |= _names_in_text("{{ " + text + " }}" if expression else text)
    return found


@functools.lru_cache(maxsize=4096)
def _names_in_text(text: str) -> frozenset[str]:
    """Parsed once per distinct text: a fleet's hosts share their group_vars."""
    import jinja2
    from jinja2 import meta

    try:
        return frozenset(meta.find_undeclared_variables(_parser().parse(text)))
    except jinja2.TemplateSyntaxError:
        return frozenset()  # refused with its file and line when the value is rendered, if it ever is


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def used_names(roles: list[Role], env: jinja2.Environment, variables: dict[str, Any]) -> set[str]:
    """Every variable the roles use: named by a task, a `when:` or a template, a default of theirs,
    carrying their prefix, or named by the value of one of those (transitively)."""
    needed = set(ENGINE_NAMES)
    prefixes = tuple(f"{role.name}_" for role in roles)
    for role in roles:
        needed |= set(role.defaults) | _role_names(role)
    needed |= {name for name in variables if name.startswith(prefixes)}
    pending = list(needed)
    while pending:
        for name in names_in(env, variables.get(pending.pop())):
            if name not in needed:
                needed.add(name)
                pending.append(name)
    return needed


def _role_names(role: Role) -> frozenset[str]:
    """The names a role's tasks, `when:`s and templates refer to (worked out once per loaded role)."""
    cached = getattr(role, "_referenced_names", None)
    if cached is None:
        found: set[str] = set()
        for task in role.tasks + role.handlers:
            found |= names_in(_parser(), task.args)
            if task.when is not None:
                found |= names_in(_parser(), str(task.when), expression=True)
        cached = frozenset(found | _template_names(role.path / "templates"))
        role._referenced_names = cached
    return cached


def _template_names(directory: Path) -> set[str]:
    import jinja2

    found: set[str] = set()
    if not directory.is_dir():
        return found
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            found |= _names_in_text(file.read_text())
        except (jinja2.TemplateSyntaxError, UnicodeDecodeError):
            continue  # the template's own error comes when it is rendered, with its line
    return found
