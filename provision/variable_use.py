"""Which variables the selected roles use: only those are rendered and only their secrets are read."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import jinja2
from jinja2 import meta

from provision.roles import Role

# Names the engine reads from a host's variables itself, besides what tasks and templates name.
ENGINE_NAMES = {"apt_lock_timeout"}


def names_in(env: jinja2.Environment, value: Any, expression: bool = False) -> set[str]:
    """The variable names a value's templates (or a `when:` expression) refer to; none for plain data."""
    found: set[str] = set()
    for text in _strings(value):
        if not expression and "{{" not in text and "{%" not in text:
            continue
        try:
            found |= meta.find_undeclared_variables(env.parse("{{ " + text + " }}" if expression else text))
        except jinja2.TemplateSyntaxError:
            continue  # refused with its file and line when the value is rendered, if it ever is
    return found


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
        needed |= set(role.defaults)
        for task in role.tasks + role.handlers:
            needed |= names_in(env, task.args)
            if task.when is not None:
                needed |= names_in(env, str(task.when), expression=True)
        needed |= _template_names(env, role.path / "templates")
    needed |= {name for name in variables if name.startswith(prefixes)}
    pending = list(needed)
    while pending:
        for name in names_in(env, variables.get(pending.pop())):
            if name not in needed:
                needed.add(name)
                pending.append(name)
    return needed


def _template_names(env: jinja2.Environment, directory: Path) -> set[str]:
    found: set[str] = set()
    if not directory.is_dir():
        return found
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            found |= meta.find_undeclared_variables(env.parse(file.read_text()))
        except (jinja2.TemplateSyntaxError, UnicodeDecodeError):
            continue  # the template's own error comes when it is rendered, with its line
    return found
