"""A run imports only what it uses: the console, templating and the SSH stack load when they are needed.

Checked by outcome (which modules a fresh interpreter holds), never by time: timings belong in bench/.
"""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import PROJECT

HEAVY = {"fabric", "invoke", "rich", "jinja2", "paramiko", "cryptography", "unittest", "asyncio"}


def _loaded_after(statement: str) -> list[str]:
    """The top-level packages of HEAVY that a fresh interpreter holds after running `statement`."""
    probe = (f"{statement}\nimport json, sys\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_ssh_console_or_template_stack():
    assert _loaded_after("import provision.cli") == []


def test_the_runner_and_the_connection_facade_load_paramiko_only_to_connect():
    assert _loaded_after("import provision.runner, provision.connection") == []


def test_the_ssh_stack_loads_paramiko_without_invoke():
    """paramiko imports invoke only for ssh_config's `Match exec` (tests/test_ssh_hops.py runs one)."""
    assert _loaded_after("import provision.ssh_hops") == ["cryptography", "paramiko"]


def test_loading_tasks_for_invoke_list_loads_invoke_alone():
    assert _loaded_after("import tasks") == ["asyncio", "invoke", "unittest"]  # invoke's own: invoke.context mocks


def test_preparing_a_local_host_loads_templating_but_no_ssh_stack(tmp_path):
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "inventory.yml").write_text("all:\n  hosts:\n    here: {connection: local}\n")
    loaded = _loaded_after(f"from pathlib import Path\nfrom provision import cli\n"
                           f"cli.prepare(Path({str(tmp_path / 'hosts')!r}), 'here', None, 'base', {{}})")
    assert loaded == ["jinja2"]
