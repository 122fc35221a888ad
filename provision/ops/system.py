"""System operations: groups and membership, guarded commands, services, reboot points."""
from __future__ import annotations

from provision.errors import RoleError
from provision.ops.base import REQUIRED, OpContext, Step, as_list, operation, q, sh_join
from provision.values import require

NO_SYSTEMD = "[ -d /run/systemd/system ] || { echo 'systemd is not running here: {what} left alone'; exit 77; }"


@operation("group", name=REQUIRED, system=False)
def group(args: dict, ctx: OpContext) -> Step:
    """A local group exists."""
    name = args["name"]
    require("user", name, "group name", ctx.where, RoleError)
    return Step(
        check=f"getent group {q(name)} > /dev/null",
        apply=f"groupadd {'--system ' if args['system'] else ''}{q(name)}",
        ok_reason=f"group {name} exists",
        change=f"create group {name}",
    )


@operation("group_member", users=REQUIRED, group=REQUIRED, reconnect=False)
def group_member(args: dict, ctx: OpContext) -> Step:
    """Users belong to a group; with reconnect, the rest of the run uses a new login that has it."""
    users, grp = as_list(args["users"], "users", ctx.where), args["group"]
    require("user", users + [grp], "group_member user or group", ctx.where, RoleError)
    member = "id -nG \"$prov_u\" | tr ' ' '\\n' | grep -qxF -- " + q(grp)
    return Step(
        check=f"for prov_u in {sh_join(users)}; do {member} || exit 1; done",
        apply=f"for prov_u in {sh_join(users)}; do {member} || usermod -aG {q(grp)} \"$prov_u\" || exit 1; done",
        ok_reason=f"{', '.join(users)} in group {grp}",
        change=f"add {', '.join(users)} to group {grp}",
        control="reconnect" if args["reconnect"] else None,
    )


@operation("command", run=None, shell=None, creates="", unless=None, unless_shell=None)
def command(args: dict, ctx: OpContext) -> Step:
    """A command guarded by `creates` (a path it makes) or `unless` (a command that succeeds once done).

    `run`/`unless` take argument lists, quoted once; `shell`/`unless_shell` are the one escape
    hatch for raw shell, named as such.
    """
    if (args["run"] is None) == (args["shell"] is None):
        raise RoleError(f"{ctx.where}: command needs exactly one of run (a list) or shell (a string)")
    if args["unless"] is not None and args["unless_shell"] is not None:
        raise RoleError(f"{ctx.where}: command takes unless or unless_shell, not both")
    guards = []
    require("quoted_path", args["creates"], "creates", ctx.where, RoleError)
    if args["creates"]:
        guards.append(f"[ -e {q(args['creates'])} ]")
    if args["unless"] is not None:
        guards.append(_argv(args["unless"], "unless", ctx.where) + " > /dev/null 2>&1")
    if args["unless_shell"] is not None:
        guards.append(f"{{\n{str(args['unless_shell']).rstrip()}\n}} > /dev/null 2>&1")
    if not guards:
        raise RoleError(f"{ctx.where}: command needs creates, unless or unless_shell, or it would run every time")
    body = _argv(args["run"], "run", ctx.where) if args["run"] is not None else str(args["shell"])
    lines = body.strip().splitlines()
    shown = lines[0] if len(lines) == 1 else f"a {len(lines)}-line shell script"
    return Step(
        check=" && ".join(guards),
        apply=body,
        ok_reason="guard satisfied: " + " and ".join(guards),
        change=f"run {shown}",
    )


def _argv(value, what: str, where: str) -> str:
    if not isinstance(value, list) or not value:
        raise RoleError(f"{where}: command {what} must be a non-empty list of arguments, got {value!r}")
    return sh_join(value)


@operation("service", name=REQUIRED, state="started", enabled=None)
def service(args: dict, ctx: OpContext) -> Step:
    """A systemd service started, stopped or restarted (restarted: for handlers); skipped without systemd."""
    name, state = args["name"], args["state"]
    require("name", name, "service name", ctx.where, RoleError)
    guard = NO_SYSTEMD.replace("{what}", f"service {name}")
    checks = []
    if state == "started":
        checks.append(f"systemctl is-active --quiet {q(name)}")
        verbs = ["start"]
    elif state == "stopped":
        checks.append(f"! systemctl is-active --quiet {q(name)}")
        verbs = ["stop"]
    elif state in ("restarted", "reloaded"):
        checks.append("false")
        verbs = [state[:-2]]
    else:
        raise RoleError(f"{ctx.where}: service state must be started, stopped, restarted or reloaded, got {state!r}")
    if args["enabled"] is not None:
        verb = "enable" if args["enabled"] else "disable"
        checks.append(f"{'' if args['enabled'] else '! '}systemctl is-enabled --quiet {q(name)}")
        verbs.insert(0, verb)
    # A unit whose earlier starts failed (docker's first start, say, before its daemon.json is
    # right) stays refused by its StartLimitBurst for StartLimitIntervalSec even once the cause is
    # fixed; reset-failed clears that counter (systemd.unit(5)), and a start that still fails says so.
    reset = f"{{ systemctl reset-failed {q(name)} > /dev/null 2>&1 || true; }} && "
    applies = [f"{reset if verb in ('start', 'restart', 'reload') else ''}systemctl {verb} {q(name)}" for verb in verbs]
    return Step(
        check=guard + "\n" + " && ".join(checks),
        apply=f"{guard}\n" + " && ".join(applies),
        ok_reason=f"service {name} {state}",
        change=f"{' and '.join(verbs)} {name}",
        recheck=state not in ("restarted", "reloaded"),
    )


@operation("reboot", when_file="/var/run/reboot-required", reason="", unless_shell=None)
def reboot(args: dict, ctx: OpContext) -> Step:
    """A reboot point: the run reboots the host here and continues after, when `when_file` exists
    or, given `unless_shell`, when that shell condition fails (it says the running system is as wanted)."""
    reason = f": {args['reason']}" if args["reason"] else ""
    if args["unless_shell"] is not None:
        return Step(
            # A subshell, so that `exit` in the condition ends the condition, not the script.
            check=f"(\n{str(args['unless_shell']).rstrip()}\n) > /dev/null 2>&1",
            apply="true",
            ok_reason="no reboot needed",
            change=f"reboot{reason}",
            control="reboot",
        )
    path = args["when_file"]
    require("quoted_path", path, "reboot when_file", ctx.where, RoleError)
    return Step(
        check=f"[ ! -e {q(path)} ]",
        apply="true",
        ok_reason=f"no reboot needed ({path} absent)",
        change=f"reboot{reason} ({path} present)",
        control="reboot",
    )


@operation("verify", run=None, shell=None, expect="")
def verify(args: dict, ctx: OpContext) -> Step:
    """A verification: the command must succeed (and print `expect`); its last line is reported."""
    if (args["run"] is None) == (args["shell"] is None):
        raise RoleError(f"{ctx.where}: verify needs exactly one of run (a list) or shell (a string)")
    body = _argv(args["run"], "run", ctx.where) if args["run"] is not None else str(args["shell"])
    if args["expect"]:
        body = f"prov_out=$( {body} 2>&1 ) || {{ printf '%s\\n' \"$prov_out\"; exit 1; }}\n" \
               f"printf '%s\\n' \"$prov_out\"\nprintf '%s\\n' \"$prov_out\" | grep -qF -- {q(args['expect'])}"
    return Step(check=body, apply="exit 1", ok_reason="verified", change=f"verify {body.splitlines()[0]}",
                control="verify")


@operation("flush_handlers")
def flush_handlers(args: dict, ctx: OpContext) -> Step:
    """Run the handlers notified so far, here rather than at the end (docker restarted before use)."""
    return Step(check="true", apply="true", ok_reason="handlers run", change="run notified handlers",
                control="flush")
