"""Bad input at the command line: exit 2, one line naming where it came from, no traceback, no connection."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import PROJECT, write

# 192.0.2.0/24 is TEST-NET-1: nothing answers there. A run that tried to connect would end
# "unreachable" with exit 1 after the 1 s connect timeout; exit 2 means it was refused first.
INVENTORY = """
    all:
      children:
        empty: {}
        web:
          hosts:
            t: {ansible_host: 192.0.2.1, roles: [helper_tools]}
"""


def provision(tmp_path, *args: str, inventory: str = INVENTORY) -> subprocess.CompletedProcess:
    write(tmp_path / "hosts" / "inventory.yml", inventory)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    argv = [sys.executable, "-m", "invoke", "-r", str(PROJECT), "provision", "--connect-timeout", "1", *args]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def one_line_refusal(run: subprocess.CompletedProcess) -> str:
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("error: ")
    return output.removeprefix("error: ")


@pytest.mark.parametrize("args, expected", [
    (["--host", "t", "-e", "x=[a"], "-e x:2:1: malformed YAML: did not find expected ',' or ']'"),
    (["--host", "t", "-e", "@missing.yml"], "missing.yml: cannot read: No such file or directory"),
    (["--host", "t", "-e", "base_apt_lock_timeout=10m"],
     "-e base_apt_lock_timeout: '10m' is not a whole number of seconds, e.g. 600"),
    (["--host", "t", "--parallel", "abc"], "--parallel must be a whole number of at least 1, got 'abc'"),
    (["--host", "t", "--parallel", "0"], "--parallel must be a whole number of at least 1, got '0'"),
    (["--group", "empty"], "--group empty selects no hosts in hosts/inventory.yml"),
    (["--host", "t", "-e", "helper_tools_extra=[-oAPT::Update::Pre-Invoke::=touch]"],
     "-e helper_tools_extra: '-oAPT::Update::Pre-Invoke::=touch' is not a Debian package name (letters, digits, "
     "+ . -, not starting with -), optionally =VERSION"),
])
def test_bad_command_line_values_are_refused_in_one_line(tmp_path, args, expected):
    assert one_line_refusal(provision(tmp_path, *args)) == expected


@pytest.mark.parametrize("name", ["[/red]", "db-[a:f]", "[bold]x"])
def test_user_text_is_printed_as_is_never_as_markup(tmp_path, name):
    assert one_line_refusal(provision(tmp_path, "--host", name)) == (
        f"unknown host '{name}' in hosts/inventory.yml; known hosts: t")


@pytest.mark.parametrize("host_line, expected", [
    ("t: {ansible_host: 192.0.2.1, ansible_port: 22x}",
     "hosts/inventory.yml:3: variable ansible_port: '22x' is not a port number from 1 to 65535"),
    ("t: {ansible_host: ops@192.0.2.1, ansible_user: ops}",
     "hosts/inventory.yml:3: variable ansible_host: 'ops@192.0.2.1' is not a host name or IP address "
     "(letters, digits, . - :; a user goes in ansible_user, a port in ansible_port)"),
    ('"[/red]": {ansible_host: 192.0.2.1}',
     "hosts/inventory.yml:3: host range '[/red]': a range is [begin:end] or [begin:end:step]"),
    ("t: {ansible_host: 192.0.2.1, base_apt_proxy: \"http://p:3142\\nAPT::Update::Pre-Invoke {\\\"touch /PWN\\\";};\"}",
     "hosts/inventory.yml:3: variable base_apt_proxy: 'http://p:3142\\nAPT::Update::Pre-Invoke {\"touch /PWN\";};' "
     "is not an http(s):// or file:// URL without spaces, quotes, backslashes or backticks"),
])
def test_bad_inventory_values_name_their_file_and_line(tmp_path, host_line, expected):
    inventory = f"all:\n  hosts:\n    {host_line}\n  vars: {{roles: [base]}}\n"
    assert one_line_refusal(provision(tmp_path, "--host", "t", inventory=inventory)) == expected
