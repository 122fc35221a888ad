"""Run compiled plans on hosts: facts, one script, reboots and reconnects; many hosts in parallel."""
from __future__ import annotations

import base64
import shlex
import difflib
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from provision.connection_vars import Become
from provision.compiler import Plan, plan_host, render_script
from provision.connection import Timeouts, open_transport
from provision.errors import ConnectError, ProvisionError, StepFailed
from provision.facts import FACTS_SCRIPT, parse_facts
from provision.inventory import Host, Inventory
from provision.results import HostResult, StepResult
from provision.roles import Role
from provision.secrets import Secret, redactor, resolve_secrets

Events = Callable[[str, str, Any], None]
MAX_RESTARTS = 4
DEFAULT_PARALLEL = 50   # hosts at once: a fleet's connections overlap, and a thread is a host being worked on
MAX_PARALLEL = 500      # beyond this, threads and sockets cost more than the overlap gains
REBOOT_COMMAND = "nohup sh -c 'sleep 2; reboot || systemctl reboot' > /dev/null 2>&1 < /dev/null &\n"


@dataclass
class RunOptions:
    check: bool = False
    diff: bool = False
    accept_new: bool = False
    parallel: int = DEFAULT_PARALLEL
    timeouts: Timeouts = field(default_factory=Timeouts)
    reboot_timeout: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)


def quiet(host: str, kind: str, payload: Any) -> None:
    """An events sink that shows nothing."""


def script_command(facts: dict, become: Become = Become()) -> str:
    """sh reading the script on stdin as the become user (root): as it is, through sudo -n, or through
    sudo -S reading the become password from the first line of stdin (never from argv)."""
    if facts.get("user") == become.user:
        return "sh -s"
    as_user = "" if become.user == "root" else f" -u {shlex.quote(become.user)}"
    if facts.get("sudo") or become.password is None:
        return f"sudo -n{as_user} sh -s"
    # -k: ignore cached credentials, so sudo reads the password line rather than leave it to sh;
    # -p '': no prompt in the output. sudo reads the password one byte at a time, up to the newline.
    return f"sudo -k -S -p ''{as_user} sh -s"


def script_stdin(command: str, become: Become, script: str) -> str:
    """What goes on the script command's stdin: the become password first when sudo -S reads it."""
    if not command.startswith("sudo -k -S"):
        return script
    password = become.password
    return f"{password.value if isinstance(password, Secret) else password}\n{script}"


def gather_facts(transport) -> dict[str, Any]:
    """One round trip: the facts script's output, parsed."""
    lines: list[str] = []
    status = transport.run("sh -s", FACTS_SCRIPT, lines.append)
    if status != 0:
        raise ConnectError(f"{transport.label}: facts script exited {status}: {transport.last_stderr.strip()[-300:]}")
    return parse_facts("\n".join(lines))


class HostRun:
    """One host's whole run; every failure ends up in its HostResult, never raised past it."""

    def __init__(self, host: Host, inventory: Inventory, roles: list[Role], options: RunOptions, events: Events):
        self.host, self.inventory, self.roles, self.options, self.events = host, inventory, roles, options, events
        self.result = HostResult(host.name, check_mode=options.check)
        self.redact = redactor([])
        self.transport = None
        self.become = Become()

    def run(self) -> HostResult:
        started = time.monotonic()
        try:
            self._run()
        except ConnectError as exc:
            self._fail("unreachable" if not self.result.steps else "failed", str(exc))
        except ProvisionError as exc:
            self._fail("failed", str(exc))
        except Exception:  # a bug must not take the other hosts' results with it; keep its traceback
            self._fail("failed", "internal error:\n" + traceback.format_exc())
        finally:
            if self.transport is not None:
                self.result.exec_count += self.transport.exec_count
                self.transport.close()
            self.result.seconds = round(time.monotonic() - started, 3)
            self.events(self.host.name, "finished", self.result)
        return self.result

    def _fail(self, status: str, message: str) -> None:
        self.result.status = status
        self.result.error = self.redact(message)

    def _connect(self):
        if self.transport is not None:
            self.result.exec_count += self.transport.exec_count
            self.transport.close()
        self.transport = open_transport(self.host, self.inventory, self.options.accept_new, self.options.timeouts)
        self.transport.on_retry = lambda why: self.events(self.host.name, "status", why)
        self.events(self.host.name, "status", "connecting")
        self.transport.open()
        return gather_facts(self.transport)

    def _run(self) -> None:
        host_vars = resolve_secrets(self.host.vars, self.host.name)
        extra = resolve_secrets(self.options.extra, self.host.name)
        host = Host(self.host.name, host_vars, self.host.groups, self.host.magic)
        self.become = host.become
        self.redact = redactor([v for v in {**host_vars, **extra}.values() if hasattr(v, "value")]
                               + self._connection_secrets(host))
        facts = self._connect()
        for _ in range(MAX_RESTARTS + 1):
            if not facts.get("sudo") and host.become.password is None:
                raise ConnectError(f"{self.transport.label}: user {facts.get('user')} cannot run sudo without a password "
                                   "(sudo -n): give it ansible_become_password (a secret), or NOPASSWD in sudoers")
            plan = plan_host(self.roles, host, extra, facts)
            self.redact = redactor(plan.all_secrets + self._connection_secrets(host))
            self.events(self.host.name, "status", f"running {len(plan.steps)} steps")
            control = self._run_script(plan, facts)
            if control == "done":
                self.result.status = "changed" if self.result.changed else "ok"
                return
            if control == "reboot":
                facts = self._reboot(facts)
            else:
                self.result.reconnects += 1
                facts = self._connect()
        raise StepFailed(f"{self.host.name}: still asking for a reboot or reconnect after {MAX_RESTARTS} restarts")

    @staticmethod
    def _connection_secrets(host: Host) -> list[Secret]:
        """The become and login passwords as secrets to redact, however the inventory gave them."""
        found = []
        for value in (host.become.password, host.login_password):
            if value is not None:
                found.append(value if isinstance(value, Secret) else Secret("password", str(value)))
        return found

    def _run_script(self, plan: Plan, facts: dict) -> str:
        """Send the script, follow its status lines; return done, reboot or reconnect."""
        steps = plan.by_id()
        seen: dict[int, StepResult] = {}
        currents: dict[int, bytes] = {}
        outcome = {"control": "", "done": False}

        def on_line(line: str) -> None:
            line = self.redact(line)
            kind, _, rest = line.partition(" ")
            sid, _, rest = rest.partition(" ")
            if kind == "@@prov" and sid == "-":
                outcome["done"] = rest == "finished"
                return
            if kind not in ("@@prov", "@@log") or not sid.isdigit() or int(sid) not in steps:
                return
            planned = steps[int(sid)]
            result = seen.setdefault(planned.id, StepResult(planned.id, planned.task.role, planned.task.name, "pending"))
            if kind == "@@log":
                result.log.append(rest)
                return
            status, _, detail = rest.partition(" ")
            if status == "current":
                currents[planned.id] = _decode(detail)
                if planned.step.desired is not None:
                    result.diff = self.redact(_diff(planned.step.path, currents[planned.id], planned.step.desired))
                return
            if status == "desired":
                result.diff = self.redact(_diff(planned.step.path, currents.get(planned.id, b""), _decode(detail)))
                return
            result.status = status
            result.detail = detail or (planned.step.ok_reason if status == "ok" else planned.step.change)
            if status == "reboot":
                outcome["control"] = "reboot"
            elif status == "changed" and planned.step.control == "reconnect":
                outcome["control"] = "reconnect"
            self.events(self.host.name, "step", result)

        script = render_script(plan, check=self.options.check, diff=self.options.diff)
        command = script_command(facts, self.become)
        status = self.transport.run(command, script_stdin(command, self.become, script), on_line)
        self._merge_steps(seen.values())
        failed = [r for r in seen.values() if r.status == "failed"]
        if failed:
            step = failed[0]
            tail = "\n".join(step.log[-10:])
            raise StepFailed(f"{self.host.name}: step {step.id} ({step.role}: {step.task}) failed ({step.detail})"
                             + (f"\n{tail}" if tail else ""))
        if outcome["done"]:
            return "done"
        if outcome["control"]:
            return outcome["control"]
        stderr = self.redact(getattr(self.transport, "last_stderr", "").strip())
        raise StepFailed(f"{self.host.name}: the script stopped (exit {status}) before it finished"
                         + (f": {stderr[-500:]}" if stderr else ""))

    def _merge_steps(self, new: Any) -> None:
        """Fold one pass into the result; a step changed in an earlier pass (before a reboot) stays changed."""
        by_task = {(r.role, r.task): r for r in self.result.steps}
        for step in new:
            old = by_task.get((step.role, step.task))
            if old is None:
                self.result.steps.append(step)
                by_task[(step.role, step.task)] = step
                continue
            if old.status in ("changed", "reboot") and step.status == "ok":
                old.status = "changed"
            else:
                old.status, old.detail, old.log, old.diff = step.status, step.detail, step.log, step.diff or old.diff

    def _reboot(self, facts: dict) -> dict:
        """Reboot detached, wait until the host answers with a new boot id, and gather facts again."""
        old_boot = facts.get("boot_id")
        self.events(self.host.name, "status", "rebooting")
        command = script_command(facts, self.become)
        self.transport.run(command, script_stdin(command, self.become, REBOOT_COMMAND), lambda line: None, timeout=30)
        self.result.exec_count += self.transport.exec_count
        self.transport.close()
        self.transport = None
        deadline = time.monotonic() + self.options.reboot_timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                facts = self._connect()
            except ConnectError as exc:
                last_error = str(exc)
                continue
            if facts.get("boot_id") != old_boot:
                self.result.reboots += 1
                self.events(self.host.name, "status", "rebooted")
                return facts
        raise ConnectError(f"{self.host.name}: did not come back with a new boot id within {self.options.reboot_timeout:g}s ({last_error})")


def _decode(encoded: str) -> bytes:
    return b"" if encoded in ("", "-") else base64.b64decode(encoded)


def _diff(path: str | None, now: bytes, wanted: bytes) -> str:
    return "".join(difflib.unified_diff(
        now.decode(errors="replace").splitlines(keepends=True), wanted.decode(errors="replace").splitlines(keepends=True),
        fromfile=f"{path} (now)", tofile=f"{path} (wanted)"))


def run_hosts(jobs: list[tuple[Host, list[Role]]], inventory: Inventory, options: RunOptions,
              events: Events = quiet) -> dict[str, HostResult]:
    """Run every host with its roles, up to options.parallel at once; one failure never stops the others.

    A pool of options.parallel threads works through the hosts: a fleet of thousands has that many threads, not one per host.
    """
    with ThreadPoolExecutor(max_workers=max(1, min(options.parallel, MAX_PARALLEL))) as pool:
        futures = [(host.name, pool.submit(HostRun(host, inventory, roles, options, events).run)) for host, roles in jobs]
        return {name: future.result() for name, future in futures}
