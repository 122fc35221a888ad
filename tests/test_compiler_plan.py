"""The compiler's plan for one host: which steps, in which order, with which ids and settings."""
from __future__ import annotations

import os

import pytest

from provision.compiler import plan_host
from provision.facts import EXAMPLE_FACTS
from provision.inventory import load_inventory
from provision.roles import load_roles
from tests.helpers import write


def plan(tmp_path, tasks: str, handlers: str = "", host_vars: str = "", extra=None, facts=None, **options):
    """plan_host for host `h` (its inventory variables `host_vars`) with one role `r` of these tasks."""
    write(tmp_path / "roles" / "r" / "tasks.yml", tasks)
    if handlers:
        write(tmp_path / "roles" / "r" / "handlers.yml", handlers)
    write(tmp_path / "hosts" / "inventory.yml", f"all:\n  hosts:\n    h: {{ansible_host: 192.0.2.1{host_vars}}}\n")
    host = load_inventory(tmp_path / "hosts").host("h")
    return plan_host(load_roles(tmp_path / "roles", ["r"]), host, extra or {}, facts or EXAMPLE_FACTS, **options)


def test_a_task_skipped_by_when_leaves_the_tasks_after_it_planned_with_consecutive_ids(tmp_path):
    planned = plan(tmp_path, """
        - name: one
          file: {path: /tmp/one, content: "1"}
        - name: skipped
          file: {path: /tmp/two, content: "2"}
          when: "false"
        - name: three
          file: {path: /tmp/three, content: "3"}
          notify: after
    """, handlers="""
        - name: after
          file: {path: /tmp/after, content: "a"}
    """)
    assert [(p.id, p.task.name) for p in planned.steps + planned.handlers] == [(1, "one"), (2, "three"), (3, "after")]


@pytest.mark.parametrize("shell", ["apt-get install -y tmux", "prov_apt install tmux", "dpkg -i ./x.deb"])
def test_raw_shell_that_runs_apt_or_dpkg_is_preceded_by_the_dpkg_repair(tmp_path, shell):
    planned = plan(tmp_path, f"""
        - name: by hand
          command: {{shell: "{shell}", creates: /x}}
    """)
    assert [p.task.op.name for p in planned.steps] == ["dpkg_repair", "command"]
    assert [p.id for p in planned.steps] == [1, 2]


def test_a_plan_without_apt_has_no_dpkg_repair(tmp_path):
    planned = plan(tmp_path, """
        - name: by hand
          command: {shell: "make", creates: /x}
    """)
    assert [p.task.op.name for p in planned.steps] == ["command"]


def test_apt_lock_timeout_from_the_host_reaches_the_plan(tmp_path):
    assert plan(tmp_path, "[]\n", host_vars=", apt_lock_timeout: 7").apt_lock_timeout == 7


@pytest.mark.parametrize("host_vars, facts_user, expected", [
    (", ansible_user: deploy", "bob", "deploy"), ("", "bob", "bob"), ("", None, "root")])
def test_connection_user_is_the_inventory_user_else_the_facts_user_else_root(tmp_path, host_vars, facts_user, expected):
    facts = {k: v for k, v in EXAMPLE_FACTS.items() if k != "user"}
    if facts_user:
        facts["user"] = facts_user
    planned = plan(tmp_path, """
        - name: who
          file: {path: /tmp/who, content: "{{ connection_user }}"}
    """, host_vars=host_vars, facts=facts)
    assert planned.steps[0].step.desired == expected.encode()


@pytest.mark.parametrize("options, reads", [({}, 1), ({"validating": True}, 0), ({"secrets_at_boot": True}, 0)])
def test_ssm_secrets_are_read_for_a_run_but_not_to_validate_or_for_user_data(tmp_path, monkeypatch, options, reads):
    (tmp_path / "bin").mkdir()
    write(tmp_path / "bin" / "aws", '#!/bin/sh\necho "$*" >> "$AWS_CALLS"\necho ssm-value\n').chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("AWS_CALLS", str(tmp_path / "aws-calls"))
    write(tmp_path / "roles" / "r" / "defaults.yml", "r_token: {secret_ssm: /p/tok}\n")
    planned = plan(tmp_path, """
        - name: token
          file: {path: /tmp/token, content: "{{ r_token }}", mode: "0600"}
    """, **options)
    calls = (tmp_path / "aws-calls").read_text().splitlines() if (tmp_path / "aws-calls").exists() else []
    assert calls == ["ssm get-parameter --with-decryption --name /p/tok --query Parameter.Value --output text"] * reads
    assert [secret.value for secret in planned.secrets.values()] == ["ssm-value" if reads else ""]
