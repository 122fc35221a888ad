"""Fleet scale: the live view's cost per event, role loads and template compiles per run, 1,000 unreachable hosts."""
from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import jinja2
from rich.console import Console

from provision import roles as roles_module
from provision.cli import prepare
from provision.report import LIVE_ROWS, SCREENFUL, LiveView, print_errors, summary_table
from provision.results import HostResult, StepResult
from tests.helpers import PROJECT, roles_with, write

FLEET = 10_000


def fleet_inventory(path, count: int, port: int, roles: str = "[fleet]") -> None:
    """`count` hosts on loopback addresses 127.0.x.y (nothing else is ever addressed) at `port`."""
    lines = ["all:", "  vars:", f"    roles: {roles}", "  hosts:"]
    lines += [f"    h{i}: {{ansible_host: 127.0.{1 + i // 250}.{1 + i % 250}, ansible_port: {port}}}" for i in range(count)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "inventory.yml").write_text("\n".join(lines) + "\n")


def free_port() -> int:
    """A port nothing listens on: the kernel's pick for a socket closed at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_preparing_ten_thousand_hosts_loads_each_role_once_and_compiles_each_template_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    roles = roles_with(tmp_path, {"fleet": {
        "defaults.yml": "fleet_motd: welcome to {{ inventory_hostname }}\nfleet_dir: /opt/fleet\n",
        "meta.yml": "dependencies: [base]\n",
        "tasks.yml": """
            - name: A directory
              directory: {path: "{{ fleet_dir }}"}
            - name: A templated file
              template: {src: motd.j2, dest: "{{ fleet_dir }}/motd"}
              when: "fleet_dir != ''"
        """,
        "templates/motd.j2": "{{ fleet_motd }}\n",
    }})
    fleet_inventory(tmp_path / "hosts", FLEET, 22)
    loads, compiles = [], []
    real_load, real_compile = roles_module._load_role, jinja2.Environment.compile
    monkeypatch.setattr(roles_module, "_load_role", lambda path: loads.append(path.name) or real_load(path))
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda env, source, *a, **k: compiles.append(source) or real_compile(env, source, *a, **k))

    _, prepared = prepare(tmp_path / "hosts", None, "all", None, {}, roles)

    assert len(prepared) == FLEET
    assert sorted(loads) == ["base", "fleet"], "each role is read once per run, not once per host"
    assert prepared[0][1] is prepared[-1][1], "hosts with the same roles share one loaded list"
    # Every expression and template is compiled once for the run: the count does not grow with the hosts.
    assert 0 < len(compiles) < 40, f"{len(compiles)} compiles for {FLEET} hosts"
    assert len(compiles) == len({repr(c) for c in compiles})


def _result(name: str, status: str, error: str = "") -> HostResult:
    result = HostResult(name, status=status, error=error)
    if status in ("ok", "changed"):
        result.steps = [StepResult(1, "base", "a step", "changed" if status == "changed" else "ok")]
    return result


def test_live_view_events_do_not_draw_and_a_drawing_is_bounded_whatever_the_host_count():
    out = io.StringIO()
    hosts = [f"h{i}" for i in range(FLEET)]
    view = LiveView(Console(file=out, width=160), hosts)
    for i, host in enumerate(hosts):
        view.event(host, "status", "connecting")
        if i % 2:
            view.event(host, "step", StepResult(1, "base", "a step", "ok"))
            view.event(host, "finished", _result(host, "ok"))
        elif i < FLEET - 30:  # the last 15 even hosts are still running
            view.event(host, "finished", _result(host, "unreachable", f"{host} (127.0.0.1:9): cannot connect"))
    assert view.renders == 0, "an event only counts; the view is drawn at the refresh rate"
    assert out.getvalue() == "", "ok steps print nothing unless verbose"

    drawing = Console(file=io.StringIO(), width=160, record=True)
    drawing.print(view._table())
    text = drawing.export_text()
    assert view.renders == 1
    assert f"running 15 · waiting 0 · ok {FLEET // 2} · unreachable {FLEET // 2 - 15}  (of {FLEET})" in text
    named = [line.split()[0] for line in text.splitlines()[1:] if line.strip()]
    assert len(named) == 2 * LIVE_ROWS + 1, text  # running hosts, "… 3 more running", the latest failures
    assert "… 3 more running" in text
    assert f"h{FLEET - 32}" in text and "cannot connect" in text  # the latest failure is named with its error


def test_live_view_prints_changes_and_failure_logs():
    out = io.StringIO()
    view = LiveView(Console(file=out, width=160), ["a"])
    view.event("a", "step", StepResult(1, "base", "write motd", "changed", detail="content differs", diff="-x\n+y\n"))
    view.event("a", "step", StepResult(2, "base", "run it", "failed", detail="exit 3", log=["boom"]))
    printed = out.getvalue()
    assert "changed" in printed and "base: write motd" in printed and "+y" in printed and "boom" in printed


def test_summary_and_errors_collapse_past_a_screenful_failed_hosts_first():
    results = {f"h{i}": _result(f"h{i}", "ok") for i in range(FLEET)}
    results["h5000"] = _result("h5000", "failed", "h5000: step 1 failed")
    results["h7000"] = _result("h7000", "changed")
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(summary_table(results))
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) <= SCREENFUL + 3
    assert rows[0].split("│")[1].strip() == "h5000" and rows[1].split("│")[1].strip() == "h7000"
    assert f"… {FLEET - SCREENFUL + 1} more" in text and "--json FILE reports every host" in text

    small = Console(file=io.StringIO(), width=200, record=True)
    small.print(summary_table({name: results[name] for name in ("h1", "h5000")}))
    assert "more" not in small.export_text()

    errors = Console(file=io.StringIO(), width=200, record=True)
    print_errors(errors, {f"h{i}": _result(f"h{i}", "unreachable", f"h{i}: refused") for i in range(100)})
    lines = errors.export_text().splitlines()
    assert len(lines) == SCREENFUL + 1 and lines[-1].startswith(f"… and {100 - SCREENFUL} more failed hosts")


def test_a_thousand_hosts_refusing_connections_all_end_unreachable_exit_1(tmp_path):
    inventory = tmp_path / "hosts"
    fleet_inventory(inventory, 1000, free_port(), roles="[base]")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(PROJECT), "provision", "--inventory", str(inventory), "--group", "all",
         "--json", str(report), "--parallel", "100", "--connect-retries", "0"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    hosts = json.loads(report.read_text())["hosts"]
    assert len(hosts) == 1000
    assert {h["status"] for h in hosts.values()} == {"unreachable"}
    assert all(h["error"].endswith("cannot connect: Connection refused") for h in hosts.values())
    assert "… and 960 more failed hosts" in done.stdout
