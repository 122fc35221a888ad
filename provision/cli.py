"""The commands behind tasks.py: load and validate everything, then run, show and report."""
from __future__ import annotations

import atexit
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision.compiler import plan_host
from provision.connection import Timeouts, open_transport
from provision.errors import ProvisionError, RoleError
from provision.facts import EXAMPLE_FACTS
from provision.inventory import Host, Inventory, load_inventory
from provision.results import HostResult
from provision.roles import Role, RoleLibrary, check_variable_names, load_roles
from provision.retry import RetryPolicy, policy_for
from provision.runner import MAX_PARALLEL, RunOptions, gather_facts, run_hosts
from provision.values import LocatedStr
from provision.yamlfile import load_yaml, parse_yaml

if TYPE_CHECKING:
    from rich.console import Console

PROJECT = Path(__file__).resolve().parent.parent
ROLES_DIR = PROJECT / "roles"

# The interpreter's last garbage collections at exit walk every object paramiko, rich, jinja2 and
# PyYAML made, only to free memory the exit frees anyway: 0.1-0.15 s of a 0.5 s no-op here.
# Frozen objects are left out of those collections (gc.freeze); atexit handlers and module teardown
# still run, and a run closes everything it writes before it returns.
atexit.register(gc.freeze)


def parse_extra(items: list[str]) -> dict[str, Any]:
    """-e key=value (value read as YAML) or -e @file.yml, later ones winning."""
    extra: dict[str, Any] = {}
    for item in items or []:
        if item.startswith("@"):
            data = load_yaml(Path(item[1:]), ProvisionError) or {}
            if not isinstance(data, dict):
                raise ProvisionError(f"-e {item}: the file must hold a mapping")
            extra.update(data)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ProvisionError(f"-e {item!r}: expected key=value")
        extra[key.strip()] = _from_command_line(parse_yaml(value, f"-e {key.strip()}", ProvisionError)) if value else ""
    return extra


def _from_command_line(value: Any) -> Any:
    """A -e value whose strings say they came from -e (an error then names it, not a file line)."""
    if isinstance(value, LocatedStr):
        return LocatedStr(value, "-e")
    if isinstance(value, list):
        return [_from_command_line(item) for item in value]
    if isinstance(value, dict):
        return {key: _from_command_line(item) for key, item in value.items()}
    return value


def number_option(value: Any, option: str, least: float = 1, whole: bool = True) -> float:
    """A numeric command-line option, refused in one line unless a (whole) number of at least `least`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number >= least or (whole and not number.is_integer()):
        raise ProvisionError(f"{option} must be a {'whole ' if whole else ''}number of at least {least:g}, got {value!r}")
    return int(number) if whole else number


def roles_for(host: Host, roles_option: str | None) -> list[str]:
    if roles_option:
        return [r.strip() for r in roles_option.split(",") if r.strip()]
    names = host.vars.get("roles")
    if not names:
        raise RoleError(f"host {host.name} has no roles: set roles: in its group or host vars, or pass --roles")
    if not isinstance(names, list):
        raise RoleError(f"host {host.name}: roles must be a list of role names, got {names!r}")
    return [str(n) for n in names]


def prepare(inventory_path: Path, host: str | None, group: str | None, roles_option: str | None,
            extra: dict[str, Any], roles_dir: Path = ROLES_DIR) -> tuple[Inventory, list[tuple[Host, list[Role]]]]:
    """Everything that can be refused before a connection: inventory, roles, variables, templates."""
    inventory = load_inventory(inventory_path)
    hosts = inventory.select(host, group)
    check_variable_names(roles_dir, extra, "-e")
    library = RoleLibrary(roles_dir)  # each role read once, however many hosts use it
    prepared = []
    for h in hosts:
        check_variable_names(roles_dir, h.vars, f"inventory, host {h.name}")
        policy_for(h, RetryPolicy())  # a malformed connect_retries is refused now, not at connect time
        roles = library.load(roles_for(h, roles_option))
        plan_host(roles, h, extra, EXAMPLE_FACTS, validating=True)  # reads only the secrets its roles use
        prepared.append((h, roles))
    return inventory, prepared


def provision(inventory_path: Path, host: str | None, group: str | None, roles_option: str | None,
              options: RunOptions, json_path: str | None, console: Console,
              roles_dir: Path = ROLES_DIR) -> dict[str, HostResult]:
    """Provision the selected hosts; returns each host's result (the caller sets the exit status)."""
    from provision.report import LiveView, print_errors, print_verifications, summary_table, write_json  # rich: drawn here

    if not 1 <= options.parallel <= MAX_PARALLEL:
        raise ProvisionError(f"--parallel {options.parallel}: hosts at once must be from 1 to {MAX_PARALLEL}")
    inventory, prepared = prepare(inventory_path, host, group, roles_option, options.extra, roles_dir)
    with LiveView(console, [h.name for h, _ in prepared]) as view:
        results = run_hosts(prepared, inventory, options, view.event)
    console.print(summary_table(results))
    print_verifications(console, results)
    print_errors(console, results)
    if json_path:
        write_json(Path(json_path), results)
    return results


def facts(inventory_path: Path, host: str, accept_new: bool, timeouts: Timeouts) -> dict[str, Any]:
    """Gather one host's facts (one round trip)."""
    inventory = load_inventory(inventory_path)
    return _gather(inventory, inventory.host(host), accept_new, timeouts)


def _gather(inventory: Inventory, target: Host, accept_new: bool, timeouts: Timeouts) -> dict[str, Any]:
    transport = open_transport(target, inventory, accept_new, timeouts)
    try:
        transport.open()
        return gather_facts(transport)
    finally:
        transport.close()


def preflight(inventory_path: Path, host: str, extra: dict[str, Any], accept_new: bool, timeouts: Timeouts):
    """The GPU decision for one host from its real facts and its variables (raises PreflightError)."""
    from provision.gpu.plan import request_from
    from provision.gpu.preflight import decide

    inventory = load_inventory(inventory_path)
    target = inventory.host(host)
    found = _gather(inventory, target, accept_new, timeouts)
    defaults = {}
    host_roles = target.vars.get("roles") if isinstance(target.vars.get("roles"), list) else []
    for role in load_roles(ROLES_DIR, ["nvidia_driver"] + (["apptainer"] if "apptainer" in host_roles else [])):
        defaults.update(role.defaults)
    variables = {**defaults, **target.vars, **extra}
    return found, decide(found, request_from(variables))


def userdata(inventory_path: Path, host: str, roles_option: str | None, extra: dict[str, Any], fmt: str,
             embed_secrets: bool, roles_dir: Path = ROLES_DIR):
    """User-data for one host from its declared facts and roles (no connection); a UserData."""
    from provision.userdata import render_userdata

    inventory = load_inventory(inventory_path)
    target = inventory.host(host)
    check_variable_names(roles_dir, extra, "-e")
    check_variable_names(roles_dir, target.vars, f"inventory, host {target.name}")
    roles = load_roles(roles_dir, roles_for(target, roles_option))
    return render_userdata(roles, target, extra, fmt, embed_secrets)
