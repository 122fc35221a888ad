"""The engine's promises from the README, each checked by its outcome through the local transport."""
from __future__ import annotations

import os
import shutil

import pytest
from rich.console import Console

from provision import cli
from provision.errors import ProvisionError
from provision.runner import RunOptions
from tests.helpers import roles_with, write

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs coreutils")

# Values a shell would run if any operation pasted them unquoted into the script.
# Those without spaces or quotes create their file by a bare redirection.
HOSTILE = ["$(touch {root}/pwned-subst)", "`touch {root}/pwned-tick`", "x; touch {root}/pwned-semi",
           "a|touch {root}/pwned-pipe", "b&&touch {root}/pwned-and", "c\ntouch {root}/pwned-newline",
           "$(>{root}/pwned-bare-subst)", "`>{root}/pwned-bare-tick`", "x;>{root}/pwned-bare-semi",
           "a|>{root}/pwned-bare-pipe", "b&>{root}/pwned-bare-amp", "${{HOME:+c}}>{root}/pwned-bare-redirect"]


def make_project(tmp_path, monkeypatch, tasks: str, handlers: str = "", host_vars: str = "", hosts: str = "here"):
    """Local hosts with one role `t` (root: tmp_path/root); returns (run, root)."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("PROVISION_STATE_DIR", str(tmp_path / "state"))
    lines = "".join(f"    {name}: {{connection: local, roles: [t], t_root: \"{root}\"{host_vars}}}\n"
                    for name in hosts.split())
    write(tmp_path / "hosts" / "inventory.yml", "all:\n  hosts:\n" + lines)
    files = {"defaults.yml": "t_root: /nonexistent\nt_value: default\nt_owner: root\nt_group: root\nt_meet: go\n", "tasks.yml": tasks}
    if handlers:
        files["handlers.yml"] = handlers
    roles = roles_with(tmp_path, {"t": files})

    def run(host: str = "here", **options):
        results = cli.provision(tmp_path / "hosts", None if " " in hosts else host, "all" if " " in hosts else None, None,
                                RunOptions(**options), None, Console(file=open(os.devnull, "w")), roles)
        return results if " " in hosts else results[host]
    return run, root


def test_a_step_whose_check_still_fails_after_its_apply_fails_the_host(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Claims to make a file but does not
          command: {shell: "echo pretending", creates: "{{ t_root }}/never-made"}
        - name: After it
          file: {path: "{{ t_root }}/after", content: x}
    """)
    result = run()
    assert result.status == "failed"
    assert "applied, but its check still fails" in result.error
    assert not (root / "after").exists(), "the run stopped at the step that could not converge"


def test_a_notified_handler_survives_a_failed_run_and_runs_on_the_next(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Configure
          file: {path: "{{ t_root }}/conf", content: "v1\\n"}
          notify: restart app
        - name: Fails until allowed
          command: {shell: "[ -e {{ t_root | quote }}/allowed ] && touch {{ t_root | quote }}/step2", creates: "{{ t_root }}/step2"}
    """, handlers="""
        - name: restart app
          command: {shell: "echo restarted >> {{ t_root | quote }}/restarts", creates: /nonexistent-so-it-runs}
    """)
    first = run()
    assert first.status == "failed" and not (root / "restarts").exists()
    (root / "allowed").touch()
    second = run()
    assert second.status == "changed", second.error
    assert [s.task for s in second.steps if s.status == "changed"] == ["Fails until allowed", "restart app"]
    assert (root / "restarts").read_text() == "restarted\n", "the handler notified by the failed run ran"
    third = run()
    assert third.status == "ok" and (root / "restarts").read_text() == "restarted\n", "and only once"


def test_extra_vars_win_over_the_host_definition_of_the_same_variable(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Write the value
          file: {path: "{{ t_root }}/value", content: "{{ t_value }}\\n"}
    """, host_vars=", t_value: from-host")
    assert run().status == "changed"
    assert (root / "value").read_text() == "from-host\n", "host variables win over role defaults"
    assert run(extra={"t_value": "from-cli"}).status == "changed"
    assert (root / "value").read_text() == "from-cli\n", "-e wins over the host"


def test_hostile_values_reach_the_host_literally_through_every_operation(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: A file holding the value
          file: {path: "{{ t_root }}/file", content: "{{ t_value }}", owner: "{{ t_owner }}", group: "{{ t_group }}"}
        - name: A line holding the value
          line: {path: "{{ t_root }}/lines", line: "hostile={{ t_value }}", regexp: "^hostile="}
        - name: A command given the value as an argument
          command: {run: [sh, -c, 'printf "%s" "$1" > "$2"', sh, "{{ t_value }}", "{{ t_root }}/argv"], unless: [test, -e, "{{ t_root }}/argv"]}
        - name: A command guarded by a command given the value
          command: {run: [touch, "{{ t_root }}/guarded"], unless: [sh, -c, '[ -e "$2" ] && [ "$1" = "$3" ]', sh, "{{ t_value }}", "{{ t_root }}/guarded", "{{ t_value }}"]}
        - name: JSON holding the value
          json_merge: {path: "{{ t_root }}/data.json", data: {key: "{{ t_value }}"}}
    """)
    import grp
    import json
    import pwd
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    for template in HOSTILE:
        value = template.format(root=root).replace("\n", " ")  # a line holds no newline
        extra = {"t_value": value, "t_owner": owner, "t_group": group}
        result = run(extra=extra)
        assert result.status == "changed", (value, result.error)
        assert (root / "file").read_text() == value
        assert (root / "lines").read_text().splitlines() == [f"hostile={value}"]
        assert (root / "argv").read_text() == value
        assert json.loads((root / "data.json").read_text()) == {"key": value}
        assert not list(root.glob("pwned*")), f"{value!r} ran as shell"
        assert run(extra=extra).status == "ok", f"{value!r}: the second run changed something"
        (root / "argv").unlink()
        (root / "guarded").unlink()


def test_a_hostile_value_in_a_path_names_that_path_literally_or_is_refused_before_any_connection(tmp_path, monkeypatch):
    """Paths are quoted wherever used: a one-line value is just a strange name; a newline is refused at load."""
    run, root = make_project(tmp_path, monkeypatch, """
        - name: A directory named by the value
          directory: {path: "{{ t_root }}/{{ t_value }}"}
    """)
    for template in HOSTILE:
        value = template.format(root=root)
        if "\n" in value:
            with pytest.raises(ProvisionError, match=r"A directory named by the value|variable t_value"):
                run(extra={"t_value": value})
            continue
        assert run(extra={"t_value": value}).status == "changed", value
        assert os.path.isdir(f"{root}/{value}"), value
    assert not [p for p in root.iterdir() if p.name.startswith("pwned")], "no value ran as a command"


def test_hosts_run_at_once_up_to_the_parallel_option(tmp_path, monkeypatch):
    """Each host's step waits (bounded) until all three have started: only three at once get past it."""
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Meet the others
          command:
            creates: "{{ t_root }}/met-{{ inventory_hostname }}"
            shell: |
              d={{ t_root | quote }}
              h={{ inventory_hostname | quote }}
              [ -z "$(ls "$d/running")" ] || touch "$d/overlap"
              touch "$d/running/$h" "$d/started/$h"
              i=0
              while [ {{ t_meet | quote }} = wait ] && [ "$(ls "$d/started" | wc -l)" -lt 3 ]; do
                i=$((i + 1)); [ "$i" -lt 600 ] || exit 9; sleep 0.1
              done
              rm "$d/running/$h"
              touch "$d/met-$h"
    """, hosts="h1 h2 h3", host_vars=", t_meet: wait")
    for folder in ("running", "started"):
        (root / folder).mkdir()
    results = run(parallel=3)
    assert {h: r.status for h, r in results.items()} == {"h1": "changed", "h2": "changed", "h3": "changed"}, \
        {h: r.error for h, r in results.items()}
    for path in list(root.glob("met-*")) + list((root / "started").iterdir()) + list(root.glob("overlap")):
        path.unlink()
    results = run(parallel=1, extra={"t_meet": "go"})
    assert all(r.status == "changed" for r in results.values())
    assert not (root / "overlap").exists(), "--parallel 1 ran two hosts at once"


def test_check_mode_leaves_no_notified_handler_behind(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Configure
          file: {path: "{{ t_root }}/conf", content: "{{ t_value }}\\n"}
          notify: restart app
    """, handlers="""
        - name: restart app
          command: {shell: "echo restarted >> {{ t_root | quote }}/restarts", creates: /nonexistent-so-it-runs}
    """)
    assert run().status == "changed" and (root / "restarts").read_text() == "restarted\n"
    checked = run(check=True, extra={"t_value": "other"})
    assert [s.status for s in checked.steps] == ["would-change", "would-change"]
    assert run().status == "ok", "nothing changed, so nothing to restart"
    assert (root / "restarts").read_text() == "restarted\n"


def test_verifications_report_their_last_line_and_a_failed_one_stops_the_host(tmp_path, monkeypatch):
    run, root = make_project(tmp_path, monkeypatch, """
        - name: Passes
          verify: {shell: "echo looking; echo GPU 0: Example", expect: "GPU 0:"}
        - name: Does not apply here
          command: {shell: "touch {{ t_root | quote }}/never", unless_shell: "echo no such thing on this host; exit 77"}
        - name: Fails
          verify: {run: [sh, -c, "echo no GPU found; exit 3"]}
        - name: Never reached
          file: {path: "{{ t_root }}/after", content: x}
    """)
    result = run()
    steps = {s.task: s for s in result.steps}
    assert (steps["Passes"].status, steps["Passes"].detail) == ("ok", "GPU 0: Example")
    assert steps["Does not apply here"].status == "skipped", "exit 77 from a check: not applicable here"
    assert steps["Fails"].status == "failed" and result.status == "failed"
    assert "no GPU found" in result.error
    assert not (root / "never").exists() and not (root / "after").exists()
