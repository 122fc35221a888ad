"""A secret written into a file's content reaches the host intact and is *** everywhere it is shown."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat

import pytest
from rich.console import Console

from provision import cli
from provision.compiler import plan_host, render_script
from provision.errors import ProvisionError
from provision.facts import EXAMPLE_FACTS
from provision.inventory import load_inventory
from provision.roles import load_roles
from provision.runner import RunOptions
from tests.helpers import roles_with, write

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils")

FIRST, SECOND = "tok-first-5b1f9e", "tok-second-c44a07"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A local host whose role writes a netrc-like file and a templated config holding a token."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("PROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CONF_TOKEN", FIRST)
    write(tmp_path / "hosts" / "inventory.yml", f"""
        all:
          hosts:
            here: {{connection: local, roles: [conf], conf_root: "{root}"}}
    """)
    roles = roles_with(tmp_path, {"conf": {
        "defaults.yml": "conf_root: /tmp\nconf_token: {secret_env: CONF_TOKEN}\n",
        "templates/pip.conf.j2": "[global]\nindex-url = https://ci:{{ conf_token }}@pypi.example/simple\n",
        "tasks.yml": """
            - name: An apt auth entry
              file:
                path: "{{ conf_root }}/auth.conf"
                content: "machine repo.example login ci password {{ conf_token }}\\n"
                mode: "0600"
            - name: A pip config
              template: {src: pip.conf.j2, dest: "{{ conf_root }}/pip.conf", mode: "0640"}
            - name: The token alone
              file: {path: "{{ conf_root }}/token", content: "{{ conf_token }}", mode: "0600"}
        """,
    }})
    return tmp_path, roles, root


def run(project, **options):
    tmp_path, roles, _ = project
    console = io.StringIO()
    result = cli.provision(tmp_path / "hosts", "here", None, None, RunOptions(**options),
                           str(tmp_path / "report.json"), Console(file=console, width=200), roles)["here"]
    return result, console.getvalue() + (tmp_path / "report.json").read_text() + json.dumps(result.as_dict())


def test_the_real_value_is_written_with_the_mode_asked_and_shown_nowhere(project):
    _, _, root = project
    result, shown = run(project)
    assert result.status == "changed", result.error
    assert [s.status for s in result.steps] == ["changed"] * 3
    assert (root / "auth.conf").read_text() == f"machine repo.example login ci password {FIRST}\n"
    assert (root / "pip.conf").read_text() == f"[global]\nindex-url = https://ci:{FIRST}@pypi.example/simple\n"
    assert (root / "token").read_text() == FIRST
    assert stat.S_IMODE((root / "auth.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "pip.conf").stat().st_mode) == 0o640
    assert FIRST not in shown


def test_an_unchanged_secret_changes_nothing_and_a_changed_one_is_a_change(project, monkeypatch):
    _, _, root = project
    run(project)
    again, _ = run(project)
    assert (again.status, again.changed) == ("ok", 0)
    monkeypatch.setenv("CONF_TOKEN", SECOND)
    check, shown = run(project, check=True, diff=True)
    assert [s.status for s in check.steps] == ["would-change"] * 3
    assert check.steps[0].diff == f"{root}/auth.conf: holds secrets, so its diff is not shown\n"
    assert FIRST not in shown and SECOND not in shown
    assert (root / "token").read_text() == FIRST, "check mode changed nothing"
    real, shown = run(project)
    assert real.changed == 3 and SECOND not in shown and FIRST not in shown
    assert (root / "auth.conf").read_text() == f"machine repo.example login ci password {SECOND}\n"


def test_the_value_travels_in_the_script_and_reaches_the_file_through_a_shell_builtin(project):
    tmp_path, roles, _ = project
    inventory = load_inventory(tmp_path / "hosts")
    host = inventory.host("here")
    plan = plan_host(load_roles(roles, ["conf"]), host, {}, EXAMPLE_FACTS)
    assert plan.steps[0].step.desired == b"machine repo.example login ci password ***\n"
    assert "printf '%s' \"$PROV_SECRET_conf_token\"" in plan.steps[0].step.apply
    script = render_script(plan)
    assert FIRST not in script, "only base64 of the value, on stdin, in the secrets section"


@pytest.mark.parametrize("task", [
    'command: {run: [curl, -u, "ci:{{ conf_token }}", https://x.example], creates: /x}',
    'file: {path: "/etc/{{ conf_token }}", content: x}',
    'line: {path: /etc/x, line: "token={{ conf_token }}"}',
])
def test_a_secret_anywhere_but_a_files_content_is_refused_at_load(project, task):
    tmp_path, roles, _ = project
    write(roles / "conf" / "tasks.yml", f"- name: Leaky\n  {task}\n")
    with pytest.raises(ProvisionError) as error:
        cli.prepare(tmp_path / "hosts", "here", None, None, {}, roles)
    assert "secret conf_token cannot go there" in str(error.value)


@pytest.mark.parametrize("mode, who", [(0o644, "group and others"), (0o640, "its group"), (0o604, "others")])
def test_a_secret_file_others_can_read_is_refused_with_the_chmod_that_fixes_it(project, mode, who):
    tmp_path, roles, _ = project
    secret = write(tmp_path / "token.txt", "from-a-file\n")
    secret.chmod(mode)
    write(roles / "conf" / "defaults.yml", f"conf_root: /tmp\nconf_token: {{secret_file: {secret}}}\n")
    with pytest.raises(ProvisionError) as error:
        cli.prepare(tmp_path / "hosts", "here", None, None, {}, roles)
    assert str(error.value) == (f"host here: variable conf_token: {secret} is open to {who} (mode {mode:04o}); "
                                f"a secret file must be yours alone: chmod 600 {secret}")
    secret.chmod(0o600)
    cli.prepare(tmp_path / "hosts", "here", None, None, {}, roles)


def test_a_handler_writes_a_secret_into_a_file_like_a_task_does(project):
    tmp_path, roles, root = project
    write(roles / "conf" / "tasks.yml", """
        - name: A marker
          file: {path: "{{ conf_root }}/marker", content: "m"}
          notify: write the token
    """)
    write(roles / "conf" / "handlers.yml", """
        - name: write the token
          file: {path: "{{ conf_root }}/from-handler", content: "token={{ conf_token }}", mode: "0600"}
    """)
    result, shown = run(project)
    assert result.status == "changed", result.error
    assert (root / "from-handler").read_text() == f"token={FIRST}"
    assert FIRST not in shown
