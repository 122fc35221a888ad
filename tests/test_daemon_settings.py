"""A mapping variable (docker_ce_daemon_settings) takes daemon.json's true and false, and they land as JSON booleans."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from rich.console import Console

from provision import cli
from provision.errors import RoleError
from provision.runner import RunOptions
from tests.helpers import local_host, roles_with

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils")


def project(tmp_path, monkeypatch, settings: str):
    root = local_host(tmp_path, monkeypatch,
                      f'roles: [daemon], daemon_root: "{tmp_path / "root"}", daemon_settings: {settings}')
    roles = roles_with(tmp_path, {"daemon": {
        "meta.yml": "kinds:\n  daemon_root: abspath\n  daemon_settings: mapping\n",
        "defaults.yml": "daemon_root: /tmp\ndaemon_settings: {}\n",
        "tasks.yml": """
            - name: Merge daemon settings
              json_merge: {path: "{{ daemon_root }}/daemon.json", data: "{{ daemon_settings }}"}
        """}})
    return roles, root


def run(tmp_path, roles):
    return cli.provision(tmp_path / "hosts", "here", None, None, RunOptions(), None,
                         Console(file=open(os.devnull, "w")), roles)["here"]


def test_true_and_false_are_daemon_json_booleans_and_a_rerun_changes_nothing(tmp_path, monkeypatch):
    roles, root = project(tmp_path, monkeypatch,
                          '{iptables: false, live-restore: true, log-opts: {max-size: 10m}, dns: [10.0.0.2]}')
    first = run(tmp_path, roles)
    assert first.status == "changed", first.error
    assert json.loads((root / "daemon.json").read_text()) == {
        "iptables": False, "live-restore": True, "log-opts": {"max-size": "10m"}, "dns": ["10.0.0.2"]}
    second = run(tmp_path, roles)
    assert (second.status, second.changed) == ("ok", 0), second.error


def test_a_value_over_two_lines_is_still_refused_naming_the_variable(tmp_path, monkeypatch):
    roles, _ = project(tmp_path, monkeypatch, '{log-opts: {max-size: "10m\\nrm -rf /"}, iptables: false}')
    with pytest.raises(RoleError, match=r"variable daemon_settings: '10m\\nrm -rf /' is not one line"):
        run(tmp_path, roles)
