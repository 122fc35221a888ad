"""Compile the roles for one host into a plan of guarded steps, and the plan into one POSIX sh script."""
from __future__ import annotations

import base64
import contextvars
import functools
from dataclasses import dataclass, field
from typing import Any

from provision.ansible_names import ansible_facts, from_deepops
from provision.errors import RoleError
from provision.gpu.plan import NvidiaView
from provision.inventory import Host
from provision.ops import OPERATIONS, OpContext, Step
from provision.roles import Role, Task, find_handler
from provision.secrets import MARKER, Secret, resolve_secrets, secret_marker, secret_shell_name
from provision.templating import evaluate, render_file, render_value, resolve_variables, shared_environment
from provision.values import check_variables, one_line
from provision.variable_use import used_names

DEFAULT_APT_LOCK_TIMEOUT = 600
# The host being planned in this thread and the secrets its script needs: the shared environment's
# secret_var filter records into it (environments are shared by all hosts of a run, filters are not per host).
_SECRET_SINK: contextvars.ContextVar[tuple[dict, str]] = contextvars.ContextVar("provision_secret_sink")


@dataclass
class PlannedStep:
    """A step with its place in the run: its id in the script, its task and its handlers."""

    id: int
    task: Task
    step: Step
    notify: list[Task] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.task.role}: {self.task.name}"


@dataclass
class Plan:
    """Everything one host's run will do, in order, and the secrets its script carries."""

    host: str
    roles: list[str]
    steps: list[PlannedStep]
    handlers: list[PlannedStep]
    secrets: dict[str, Secret]
    apt_lock_timeout: int
    all_secrets: list[Secret] = field(default_factory=list)

    def by_id(self) -> dict[int, PlannedStep]:
        return {p.id: p for p in self.steps + self.handlers}


def host_variables(roles: list[Role], host: Host, extra: dict[str, Any]) -> dict[str, Any]:
    """Variables in precedence order: role defaults < DeepOps's names for ours < the inventory < -e."""
    merged: dict[str, Any] = {}
    for role in roles:
        merged.update(role.defaults)
    merged.update(from_deepops(host.vars))
    merged.update(host.vars)
    merged.update(extra)
    return merged


def plan_host(roles: list[Role], host: Host, extra: dict[str, Any], facts: dict[str, Any],
              validating: bool = False, secrets_at_boot: bool = False) -> Plan:
    """Render every task of `roles` for `host` with its variables and facts; refuse what cannot render.

    `validating` (example facts, before any connection) leaves GPU requests to the real run:
    preflight then decides for the example GPU with no request. `secrets_at_boot` (user-data)
    leaves SSM references to be read on the host.
    """
    env = role_environment(roles)
    secrets: dict[str, Secret] = {}
    token = _SECRET_SINK.set((secrets, host.name))
    try:
        return _plan(roles, host, extra, facts, validating, secrets_at_boot, env, secrets)
    finally:
        _SECRET_SINK.reset(token)


def _secret_as_marker(value: Any) -> Any:
    """jinja2's finalize for roles: a secret rendered into text becomes its marker (a file's content restores it)."""
    return secret_marker(value.name) if isinstance(value, Secret) else value


def role_environment(roles: list[Role]):
    """The jinja2 environment for these roles' templates, shared across hosts and compiled once per run."""
    env = shared_environment(tuple(role.templates_dir for role in roles), _secret_as_marker)
    if "secret_var" not in env.filters:
        env.filters["secret_var"] = lambda value: _secret_var(value, *_SECRET_SINK.get())
    return env


def _plan(roles: list[Role], host: Host, extra: dict[str, Any], facts: dict[str, Any], validating: bool,
          secrets_at_boot: bool, env, secrets: dict[str, Secret]) -> Plan:
    everything = host_variables(roles, host, extra)
    used = used_names(roles, env, everything)
    # Only what the roles use is rendered and has its secrets read: other tools' variables stay as written.
    merged = resolve_secrets({k: v for k, v in everything.items() if k in used}, host.name,
                             fetch_ssm=not (validating or secrets_at_boot))
    by_name = {value.name: value for value in merged.values() if isinstance(value, Secret)}
    base = {**ansible_facts(facts), **host.magic, "inventory_hostname": host.name, "facts": facts,
            "connection_user": host.user or facts.get("user", "root"),
            "nvidia": NvidiaView(facts, {} if validating else merged)}
    variables = resolve_variables(env, merged, base, host.name)
    check_variables(variables, {k: v for role in roles for k, v in role.kinds.items()}, f"host {host.name}", RoleError)
    context = {**{k: v for k, v in everything.items() if k not in used}, **variables, **base}
    steps: list[PlannedStep] = []
    handlers: dict[str, PlannedStep] = {}
    next_id = 1
    if _uses_apt(roles):
        repair = Task("dpkg", "repair an interrupted dpkg before any apt step", OPERATIONS["dpkg_repair"], {}, "(built in)")
        steps.append(PlannedStep(next_id, repair, repair.op.build({}, OpContext(facts, repair.where, str))))
        next_id += 1
    for role in roles:
        for task in role.tasks:
            if task.when is not None and not evaluate(env, task.when, context, task.where):
                continue
            step = _compile(task, role, env, context, lambda name: _use_secret(name, by_name, secrets, task.where))
            planned = PlannedStep(next_id, task, step)
            next_id += 1
            for name in task.notify:
                handler = find_handler(roles, name)
                if handler.name not in handlers:
                    handlers[handler.name] = PlannedStep(0, handler, _compile(
                        handler, _role_of(roles, handler), env, context,
                        lambda name: _use_secret(name, by_name, secrets, handler.where)))
                planned.notify.append(handler)
            steps.append(planned)
    handler_steps = []
    for planned in handlers.values():
        planned.id = next_id
        next_id += 1
        handler_steps.append(planned)
    timeout = int(variables.get("apt_lock_timeout", DEFAULT_APT_LOCK_TIMEOUT))
    known = [value for value in merged.values() if isinstance(value, Secret)]
    return Plan(host.name, [r.name for r in roles], steps, handler_steps, secrets, timeout, known)


APT_OPERATIONS = {"apt_packages", "apt_repo", "dpkg_repair"}


def _uses_apt(roles: list[Role]) -> bool:
    """Whether any task (or handler) may run apt: an apt operation, or raw shell that calls it."""
    for task in (t for role in roles for t in role.tasks + role.handlers):
        if task.op.name in APT_OPERATIONS or any(word in str(task.args) for word in ("prov_apt", "apt-get", "dpkg -i")):
            return True
    return False


def _role_of(roles: list[Role], task: Task) -> Role:
    return next(role for role in roles if role.name == task.role)


def _compile(task: Task, role: Role, env, context: dict, use_secret) -> Step:
    args = _marked(render_value(env, task.args, context, task.where))
    args = task.op.validate(args, task.where)
    _refuse_secrets_outside_content(task, args)

    def render_template(name: str) -> str:
        return render_file(env, name, context, task.where, f"{role.shown_path}/templates")

    try:
        return task.op.build(args, OpContext(context["facts"], task.where, render_template, use_secret))
    except RoleError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise RoleError(f"{task.where}: {task.op.name}: {exc}") from None


SECRET_CONTENT = {("file", "content")}


def _marked(value: Any) -> Any:
    """Rendered arguments with each whole secret (`{{ token }}` alone) as its marker, like secrets inside text."""
    if isinstance(value, Secret):
        return secret_marker(value.name)
    if isinstance(value, list):
        return [_marked(item) for item in value]
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    return value


def _refuse_secrets_outside_content(task: Task, args: dict) -> None:
    """A secret may be written into a file's content; in argv, a path or a name it would leak (or be ***)."""
    for key, value in args.items():
        if (task.op.name, key) in SECRET_CONTENT:
            continue
        found = _first_marker(value)
        if found:
            raise RoleError(f"{task.where}: {task.op.name} {key}: secret {found.group(1)} cannot go there "
                            f"(it would reach a command line or a name): write it into a file's content, "
                            f"or pass it to raw shell with | secret_var")


def _first_marker(value: Any):
    if isinstance(value, str):
        return MARKER.search(value)
    items = value if isinstance(value, list) else list(value.keys()) + list(value.values()) if isinstance(value, dict) else []
    return next((found for found in map(_first_marker, items) if found), None)


def _use_secret(name: str, known: dict[str, Secret], secrets: dict[str, Secret], where: str) -> str:
    """A secret written into a file's content: carried by the script as a shell variable."""
    if name not in known:
        raise RoleError(f"{where}: secret {name} is not a secret variable of this host")
    secrets[secret_shell_name(name)] = known[name]
    return secret_shell_name(name)


def _secret_var(value: Any, secrets: dict[str, Secret], host: str) -> str:
    """The `secret_var` filter: a secret becomes a reference to a shell variable set from stdin."""
    if not isinstance(value, Secret):
        raise RoleError(f"host {host}: secret_var applied to a value that is not a secret reference")
    secrets[secret_shell_name(value.name)] = value
    return f'"${secret_shell_name(value.name)}"'


def _function(name: str, body: str) -> str:
    return f"{name}() {{\n{body.rstrip()}\n}}\n"


def _control(planned: PlannedStep) -> str:
    step = planned.step
    if step.control:
        return step.control
    if step.path:
        return "file"
    return "plain" if step.recheck else "norecheck"


def _current_sh(planned: PlannedStep) -> str:
    step, sid = planned.step, planned.id
    if step.holds_secrets:
        return f"prov_say {sid} current -"
    lines = [
        f"if [ -f '{step.path}' ]; then printf '@@prov {sid} current %s\\n' \"$(base64 -w0 < '{step.path}')\"; "
        f"else prov_say {sid} current -; fi"
    ]
    if step.desired_sh:
        lines.append(f"printf '@@prov {sid} desired %s\\n' \"$( ( {step.desired_sh} ) | base64 -w0)\"")
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _package_text(name: str) -> str:
    """A file shipped in the provision package, read once per process (every host's script starts with the prelude)."""
    import importlib.resources

    return importlib.resources.files("provision").joinpath(name).read_text()


def render_script(plan: Plan, check: bool = False, diff: bool = False, secrets_sh: str | None = None,
                  userdata: bool = False) -> str:
    """The whole run as one POSIX sh script; nothing runs until its last line is read.

    `secrets_sh` sets the secrets' shell variables; by default their values travel in the script.
    """
    prelude = _package_text("prelude.sh")
    parts = [
        "#!/bin/sh",
        f"# provision: host {one_line(plan.host)}, roles {one_line(', '.join(plan.roles))}",
        "# SC2317: step functions are called by name; SC2016: quoted literals such as $(ARCH) are apt's;",
        "# SC2043: loops over a list that may hold one item.",
        "# shellcheck disable=SC2317,SC2016,SC2043",
        f"PROV_CHECK={int(check)}",
        f"PROV_DIFF={int(diff)}",
        f"PROV_USERDATA={int(userdata)}",
        f"PROV_APT_LOCK_TIMEOUT={plan.apt_lock_timeout}",
        prelude,
    ]
    if any(p.task.op.name == "json_merge" for p in plan.steps + plan.handlers):
        awk = _package_text("json_merge.awk")
        parts.append(_function("prov_json_merge", f"[ -e \"$prov_run/json_merge.awk\" ] || cat > \"$prov_run/json_merge.awk\" <<'PROV_AWK'\n{awk}PROV_AWK\nawk -f \"$prov_run/json_merge.awk\" \"$@\""))
    for planned in plan.steps + plan.handlers:
        if planned.step.control == "flush":
            continue
        parts.append(f"# {planned.id}: {one_line(planned.label)}")
        parts.append(_function(f"s{planned.id}_check", planned.step.check))
        parts.append(_function(f"s{planned.id}_apply", planned.step.apply))
        if planned.step.path:
            parts.append(_function(f"s{planned.id}_current", _current_sh(planned)))
    main = ["prov_start"]
    handler_calls = [f"if prov_notified {p.task.handler_key}; then prov_handler {p.id} {p.task.handler_key}; fi"
                     for p in plan.handlers]
    for planned in plan.steps:
        if planned.step.control == "flush":
            main.extend(handler_calls)
            continue
        call = f"prov_step {planned.id} {_control(planned)}"
        if planned.notify:
            notes = "; ".join(f"prov_notify {h.handler_key}" for h in planned.notify)
            call = f"if ! {call}; then {notes}; fi"
        main.append(call)
    main.extend(handler_calls)
    main.append("prov_say - finished")
    parts.append(_function("prov_main", "\n".join(main)))
    parts.append(_secrets_sh(plan) if secrets_sh is None else secrets_sh)
    parts.append("prov_main < /dev/null\nexit $?\n")
    return "\n".join(parts)


def _secrets_sh(plan: Plan) -> str:
    """Secrets as shell variables, base64 in the script text (stdin), never on a command line."""
    lines = []
    for name, secret in sorted(plan.secrets.items()):
        encoded = base64.b64encode(secret.value.encode()).decode()
        lines.append(f"{name}=$(printf '%s' '{encoded}' | base64 -d)")
    return "\n".join(lines)
