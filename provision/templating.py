"""Sandboxed jinja2 rendering with StrictUndefined, whose errors name the file, line, task and variable.

jinja2 loads with the first environment made, not on import: what renders nothing does not pay for it.
"""
from __future__ import annotations

import functools
import re
import shlex
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.errors import RoleError

if TYPE_CHECKING:
    import jinja2

_WHOLE_EXPRESSION = re.compile(r"\A\{\{\s*(.+?)\s*\}\}\Z", re.S)


def make_environment(template_dirs: list[Path], finalize=None) -> jinja2.Environment:
    """The one jinja2 environment, sandboxed: templates read data but reach no Python internals.

    Roles, inventory values, recipes and job templates all render here. jinja2's immutable
    sandbox refuses attributes such as `__globals__` and calls that mutate; the helper globals
    (lipsum, cycler, joiner, namespace) are removed, as nothing needs them. Undefined variables
    are errors; trailing newlines are kept. `finalize` maps each value before it becomes text.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        finalize=finalize,
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    for name in ("lipsum", "cycler", "joiner", "namespace"):
        env.globals.pop(name, None)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    return env


@functools.lru_cache(maxsize=16)
def shared_environment(template_dirs: tuple[str, ...], finalize=None) -> jinja2.Environment:
    """One environment per set of template folders, shared by every host of a run: each expression compiles once."""
    return make_environment([Path(d) for d in template_dirs], finalize)


def _compiled(env: jinja2.Environment, kind: str, source: str):
    """env.compile_expression / env.from_string, remembered on the environment (compiling costs far more than running)."""
    cache = env.__dict__.setdefault("_provision_compiled", {})
    key = (kind, source)
    if key not in cache:
        cache[key] = (env.compile_expression(source, undefined_to_none=False) if kind == "expression"
                      else env.from_string(source))
    return cache[key]


def _describe(exc: Exception) -> str:
    import jinja2
    from jinja2.sandbox import SecurityError

    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the template sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"


def render_value(env: jinja2.Environment, value: Any, context: dict, where: str) -> Any:
    """Render every string inside `value`; a string that is one `{{ expr }}` keeps the native type."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        import jinja2

        try:
            whole = _WHOLE_EXPRESSION.match(value)
            if whole and "{{" not in whole.group(1):
                return _defined(_compiled(env, "expression", whole.group(1))(**context))
            return _compiled(env, "template", value).render(context)
        except (jinja2.TemplateError, TypeError, ValueError) as exc:
            raise RoleError(f"{where}: {_describe(exc)} in {value!r}") from None
    if isinstance(value, list):
        return [render_value(env, item, context, where) for item in value]
    if isinstance(value, dict):
        return {key: render_value(env, item, context, where) for key, item in value.items()}
    return value


def _defined(value: Any) -> Any:
    """An expression's value; an undefined one raises (StrictUndefined does on str())."""
    import jinja2

    if isinstance(value, jinja2.Undefined):
        str(value)
    return value


def evaluate(env: jinja2.Environment, expression: str, context: dict, where: str) -> Any:
    """Evaluate a jinja2 expression (a task's `when:`)."""
    import jinja2

    try:
        return _defined(_compiled(env, "expression", str(expression))(**context))
    except (jinja2.TemplateError, TypeError, ValueError) as exc:
        raise RoleError(f"{where}: {_describe(exc)} in when: {expression!r}") from None


def render_file(env: jinja2.Environment, name: str, context: dict, where: str, shown_dir: str) -> str:
    """Render a template file; an error names the template's own line."""
    import jinja2

    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound:
        raise RoleError(f"{where}: template {shown_dir}/{name} does not exist") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RoleError(f"{shown_dir}/{name}:{exc.lineno} ({where}): {_describe(exc)}") from None
    except (jinja2.TemplateError, TypeError, ValueError) as exc:
        line = _template_line(exc, name)
        raise RoleError(f"{shown_dir}/{name}:{line} ({where}): {_describe(exc)}") from None


def _template_line(exc: Exception, name: str) -> int | str:
    """The line of template `name` where rendering failed, from jinja2's rewritten traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(name):
            return frame.lineno
    return "?"


def resolve_variables(env: jinja2.Environment, variables: dict, base: dict, host: str) -> dict:
    """Render variables that refer to other variables, until none changes (defaults can use facts)."""
    resolved = dict(variables)
    for _ in range(5):
        changed = False
        for name, value in resolved.items():
            if _has_template(value):
                new = render_value(env, value, {**base, **resolved}, f"variable '{name}' for host {host}")
                changed = changed or new != value
                resolved[name] = new
        if not changed:
            break
    return resolved


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False
