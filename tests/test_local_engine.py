"""The engine end to end through the local transport: file-like operations converge, then change nothing."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import pytest
from rich.console import Console

from provision import cli
from provision.runner import RunOptions
from tests.helpers import local_host, roles_with, write

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A local host whose role writes only below tmp_path/root."""
    root = local_host(tmp_path, monkeypatch, f'roles: [files], files_root: "{tmp_path / "root"}"')
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    write(root / "daemon.json", '{"data-root": "/srv/docker", "log-driver": "json-file"}\n')
    write(root / "sshd_config", "Port 22\n#PermitRootLogin yes\nPermitRootLogin yes\n")
    roles = roles_with(tmp_path, {"files": {
        "defaults.yml": f"files_root: /tmp\nfiles_owner: {user}\nfiles_group: {group}\nfiles_greeting: hello\n",
        "tasks.yml": """
            - name: A directory
              directory: {path: "{{ files_root }}/etc/app", mode: "0750", owner: "{{ files_owner }}", group: "{{ files_group }}"}
            - name: A file
              file: {path: "{{ files_root }}/etc/app/motd", content: "{{ files_greeting }}\\n", mode: "0600", owner: "{{ files_owner }}", group: "{{ files_group }}"}
              notify: note the change
            - name: A template
              template: {src: app.conf.j2, dest: "{{ files_root }}/etc/app/app.conf", owner: "{{ files_owner }}", group: "{{ files_group }}"}
            - name: A line
              line: {path: "{{ files_root }}/sshd_config", line: "PermitRootLogin no", regexp: "^#?PermitRootLogin"}
            - name: Merge docker settings
              json_merge: {path: "{{ files_root }}/daemon.json", data: {runtimes: {nvidia: {path: nvidia-container-runtime, args: []}}, log-opts: {max-size: 10m}}}
            - name: A guarded command
              command: {shell: "echo built > {{ (files_root ~ '/built') | quote }}", creates: "{{ files_root }}/built"}
        """,
        "handlers.yml": """
            - name: note the change
              command: {shell: "echo x >> {{ (files_root ~ '/handler-runs') | quote }}", creates: "/nonexistent-so-it-runs"}
        """,
        "templates/app.conf.j2": "# app\ngreeting = {{ files_greeting }}\nkernel = {{ facts.kernel }}\n",
    }})
    return tmp_path, roles, root


def run(project, **options):
    tmp_path, roles, _ = project
    extra = options.pop("extra", {})
    return cli.provision(tmp_path / "hosts", "here", None, None, RunOptions(extra=extra, **options),
                         str(tmp_path / "report.json"), Console(file=open(os.devnull, "w")), roles)["here"]


def test_first_run_converges_and_second_changes_nothing(project):
    _, _, root = project
    first = run(project)
    assert first.status == "changed", first.error
    assert first.count("changed") == 7, "six tasks and the handler they notified"
    assert (root / "etc/app/motd").read_text() == "hello\n"
    assert oct((root / "etc/app/motd").stat().st_mode & 0o777) == "0o600"
    assert oct((root / "etc/app").stat().st_mode & 0o777) == "0o750"
    assert (root / "sshd_config").read_text() == "Port 22\nPermitRootLogin no\n"
    merged = json.loads((root / "daemon.json").read_text())
    assert merged == {"data-root": "/srv/docker", "log-driver": "json-file", "log-opts": {"max-size": "10m"},
                      "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    assert (root / "handler-runs").read_text() == "x\n"
    second = run(project)
    assert (second.status, second.count("changed"), second.count("ok")) == ("ok", 0, 6)
    assert (root / "handler-runs").read_text() == "x\n", "the handler ran without a change"
    assert second.exec_count == 2


def test_check_mode_changes_nothing_and_names_every_step(project):
    _, _, root = project
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    result = run(project, check=True, diff=True)
    after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert before == after
    assert [s.task for s in result.steps if s.status == "would-change"] == [
        "A directory", "A file", "A template", "A line", "Merge docker settings", "A guarded command", "note the change"]
    merge_step = next(s for s in result.steps if s.task == "Merge docker settings")
    assert '+  "log-opts": {' in merge_step.diff


def test_changed_template_shows_its_diff_and_only_it_changes_next(project):
    run(project)
    result = run(project, check=True, diff=True, extra={"files_greeting": "bonjour"})
    changing = [s for s in result.steps if s.status == "would-change"]
    assert [s.task for s in changing] == ["A file", "A template", "note the change"]
    template = changing[1]
    assert "-greeting = hello\n+greeting = bonjour\n" in template.diff
    real = run(project, extra={"files_greeting": "bonjour"})
    assert [s.task for s in real.steps if s.status == "changed"] == ["A file", "A template", "note the change"]


def test_a_failing_step_reports_its_output_and_stops_the_host(project):
    tmp_path, roles, root = project
    write(roles / "files" / "tasks.yml", """
        - name: Fails
          command: {shell: "echo about to fail; echo reason >&2; exit 3", creates: /nonexistent}
        - name: Never reached
          file: {path: "{{ files_root }}/never", content: x}
    """)
    result = run(project)
    assert result.status == "failed"
    assert "step 1 (files: Fails) failed (3)" in result.error
    assert "reason" in result.error
    assert not (root / "never").exists()


def test_a_secret_a_step_prints_is_redacted_from_errors_reports_and_console(project, monkeypatch):
    tmp_path, roles, root = project
    monkeypatch.setenv("FILES_TOKEN", "s3cr3t-token-value-77")
    write(roles / "files" / "defaults.yml", "files_root: /tmp\nfiles_token: {secret_env: FILES_TOKEN}\n")
    write(roles / "files" / "tasks.yml", """
        - name: Leaks its secret, then fails
          command: {shell: "printf 'token=%s\\\\n' {{ files_token | secret_var }}; exit 4", creates: /nonexistent}
    """)
    console = io.StringIO()
    result = cli.provision(tmp_path / "hosts", "here", None, None, RunOptions(), str(tmp_path / "report.json"),
                           Console(file=console), roles)["here"]
    assert result.status == "failed"
    assert "token=***" in result.error
    for text in (result.error, console.getvalue(), (tmp_path / "report.json").read_text()):
        assert "s3cr3t-token-value-77" not in text


def test_a_file_in_a_directory_that_does_not_exist_yet_is_written_with_its_parents(project):
    tmp_path, roles, root = project
    write(roles / "files" / "tasks.yml", """
        - name: Deep file
          file: {path: "{{ files_root }}/new/deeper/app.conf", content: "x = 1\\n", mode: "0640"}
    """)
    result = run(project)
    assert result.status == "changed", result.error
    assert (root / "new/deeper/app.conf").read_text() == "x = 1\n"
    assert oct((root / "new/deeper/app.conf").stat().st_mode & 0o777) == "0o640"
