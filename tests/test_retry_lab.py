"""Connection retries on a real lab host: its link goes down and comes back while a run is connecting."""
from __future__ import annotations

import threading

import pytest

from provision import cli
from provision.connection import Timeouts
from provision.runner import RunOptions, run_hosts
from tests.helpers import roles_with, write
from tests.test_engine_lab import inventory_for

pytestmark = pytest.mark.lab
HOST = "lab1"
MARK = "/root/retry-mark"


def _prepared(tmp_path, lab, monkeypatch):
    monkeypatch.chdir(tmp_path)
    roles = roles_with(tmp_path, {"mark": {"tasks.yml": f"""
        - name: Leave a mark
          file: {{path: {MARK}, content: "reached\\n"}}
    """}})
    return cli.prepare(inventory_for(tmp_path, lab, {HOST: "root"}), HOST, None, "mark", {}, roles)


def _run_in_thread(inventory, prepared, retries: int):
    """Start the run; returns (thread, outcome dict, list of status events, event set at the first failed attempt)."""
    statuses: list[str] = []
    failed_once = threading.Event()
    outcome: dict = {}

    def events(host, kind, payload):
        if kind == "status":
            statuses.append(str(payload))
            if str(payload).startswith("connect attempt"):
                failed_once.set()

    options = RunOptions(timeouts=Timeouts(connect=2, connect_retries=retries, retry_backoff=1.0))
    thread = threading.Thread(target=lambda: outcome.update(run_hosts(prepared, inventory, options, events)))
    thread.start()
    return thread, outcome, statuses, failed_once


def test_a_run_gets_through_on_a_later_attempt_when_the_link_comes_back(lab, tmp_path, monkeypatch):
    inventory, prepared = _prepared(tmp_path, lab, monkeypatch)
    lab.exec(HOST, f"rm -f {MARK}")
    lab.cut_link(HOST)
    try:
        thread, outcome, statuses, failed_once = _run_in_thread(inventory, prepared, retries=5)
        assert failed_once.wait(60), f"no failed connect attempt reported: {statuses}"
    finally:
        lab.restore_link(HOST)
    thread.join(120)
    result = outcome[HOST]
    assert result.status == "changed", (result.status, result.error, statuses)
    assert statuses[0] == "connecting" and statuses[1].startswith("connect attempt 1 failed, again in 1s")
    assert lab.exec(HOST, f"cat {MARK}").stdout == "reached\n"


def test_with_retries_off_a_run_fails_at_the_first_attempt(lab, tmp_path, monkeypatch):
    inventory, prepared = _prepared(tmp_path, lab, monkeypatch)
    lab.exec(HOST, f"rm -f {MARK}")
    lab.cut_link(HOST)
    try:
        thread, outcome, statuses, failed_once = _run_in_thread(inventory, prepared, retries=0)
        thread.join(60)
    finally:
        lab.restore_link(HOST)
    result = outcome[HOST]
    assert result.status == "unreachable" and "attempts" not in result.error, result.error
    assert not failed_once.is_set() and statuses == ["connecting"]
    assert lab.exec(HOST, f"test -e {MARK}", check=False).returncode == 1
