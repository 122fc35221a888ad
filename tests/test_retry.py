"""Connections that fail for a passing reason are tried again with backoff; key and auth failures never are."""
from __future__ import annotations

import socket
import threading

import pytest

from provision.cli import prepare
from provision.connection import SSHTransport, Timeouts
from provision.errors import ConnectError, HostKeyError, InventoryError, TransientConnectError
from provision.inventory import Host, load_inventory
from provision.retry import RetryPolicy, check_retries, openssh_transient, policy_for, with_retries
from tests.helpers import write

PASSING = [
    "ssh: connect to host 10.0.0.5 port 22: No route to host",
    "ssh: connect to host lab1 port 22: Connection refused",
    "ssh: connect to host lab1 port 2222: Connection timed out",
    "ssh: connect to host 10.0.0.5 port 22: Network is unreachable",
    "kex_exchange_identification: read: Connection reset by peer\nConnection reset by 10.0.0.5 port 22",
    "kex_exchange_identification: Connection closed by remote host",
    "Connection timed out during banner exchange",
    "channel 0: open failed: connect failed: No route to host\nstdio forwarding failed",
]
ANSWERS = [
    "Host key verification failed.",
    "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
    "root@10.0.0.5: Permission denied (publickey).",
    "Received disconnect from 10.0.0.5 port 22:2: Too many authentication failures",
    "client_loop: send disconnect: Broken pipe",  # a link lost mid-session is not a connect failure
    "sh: 1: nosuchcommand: not found",
]


@pytest.mark.parametrize("stderr", PASSING)
def test_openssh_connect_failures_that_may_pass_are_retried(stderr):
    assert openssh_transient(255, stderr)


@pytest.mark.parametrize("stderr", ANSWERS)
def test_openssh_answers_and_mid_session_failures_are_not(stderr):
    assert not openssh_transient(255, stderr)


def test_only_ssh_own_exit_status_counts():
    assert not openssh_transient(1, "ssh: connect to host x port 22: Connection refused")


def counting(error: Exception):
    calls = []

    def once():
        calls.append(1)
        raise error
    return once, calls


def test_transient_failures_get_the_retries_then_say_how_many_attempts():
    once, calls = counting(TransientConnectError("h (1.2.3.4): cannot connect: No route to host"))
    told = []
    with pytest.raises(TransientConnectError, match=r"No route to host \(gave up after 4 attempts\)$"):
        with_retries(once, RetryPolicy(3, 0.001), lambda n, delay, exc: told.append((n, delay)))
    assert len(calls) == 4 and [n for n, _ in told] == [1, 2, 3]
    assert [d for _, d in told] == [0.001, 0.002, 0.004]  # doubling backoff


@pytest.mark.parametrize("error", [HostKeyError("h: host key CHANGED"), ConnectError("h: authentication failed")])
def test_host_key_and_authentication_failures_are_never_retried(error):
    once, calls = counting(error)
    with pytest.raises(type(error)):
        with_retries(once, RetryPolicy(5, 0.001))
    assert len(calls) == 1


def test_zero_retries_is_one_attempt_with_the_plain_message():
    once, calls = counting(TransientConnectError("h: cannot connect: Connection refused"))
    with pytest.raises(TransientConnectError, match=r"Connection refused$"):
        with_retries(once, RetryPolicy(0, 0.001))
    assert len(calls) == 1


def test_a_success_on_a_later_attempt_is_returned():
    outcomes = [TransientConnectError("refused"), TransientConnectError("refused"), "connected"]

    def once():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    assert with_retries(once, RetryPolicy(2, 0.001)) == "connected"


def test_the_host_variable_wins_and_bad_values_are_refused_naming_host_and_value():
    run_default = RetryPolicy(2, 0.5)
    assert policy_for(Host("a", {}, []), run_default) == run_default
    assert policy_for(Host("a", {"connect_retries": 0}, []), run_default) == RetryPolicy(0, 0.5)
    assert policy_for(Host("a", {"ansible_ssh_retries": "4"}, []), run_default).retries == 4
    for bad in ("many", -1, 21, True, 1.5):
        with pytest.raises(InventoryError, match=r"host a, variable connect_retries: .* from 0 to 20, got"):
            policy_for(Host("a", {"connect_retries": bad}, []), run_default)
    with pytest.raises(InventoryError, match=r"^--connect-retries: .*got 'x'"):
        check_retries("x", "--connect-retries")


def test_a_bad_retry_variable_is_refused_before_any_connection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hosts" / "inventory.yml", """
        all:
          hosts:
            target: {ansible_host: 192.0.2.1, roles: [base], connect_retries: lots}
    """)
    with pytest.raises(InventoryError, match=r"^host target, variable connect_retries: .*got 'lots'"):
        prepare(tmp_path / "hosts", "target", None, None, {})


def _refusing_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _transport(tmp_path, port: int, retries: int, **host_vars) -> SSHTransport:
    write(tmp_path / "hosts" / "inventory.yml", f"""
        all:
          hosts:
            target: {{ansible_host: 127.0.0.1, ansible_port: {port}}}
    """)
    inventory = load_inventory(tmp_path / "hosts")
    host = inventory.host("target")
    host.vars.update(host_vars)
    return SSHTransport(host, inventory, timeouts=Timeouts(connect=5, connect_retries=retries, retry_backoff=0.01))


def test_a_refused_connection_is_tried_again_then_reported_unreachable(tmp_path):
    transport = _transport(tmp_path, _refusing_port(), retries=2)
    told: list[str] = []
    transport.on_retry = told.append
    with pytest.raises(TransientConnectError, match=r"cannot connect: Connection refused \(gave up after 3 attempts\)"):
        transport.open()
    assert len(told) == 2 and all("Connection refused" in line for line in told)


def test_a_connection_reset_before_the_banner_is_tried_again(tmp_path):
    """A listener that accepts and closes at once, as sshd does while it restarts (or past MaxStartups)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        transport = _transport(tmp_path, server.getsockname()[1], retries=1)
        with pytest.raises(TransientConnectError, match=r"gave up after 2 attempts"):
            transport.open()
        assert len(accepted) == 2
    finally:
        server.close()


def test_the_host_variable_turns_retries_off(tmp_path):
    transport = _transport(tmp_path, _refusing_port(), retries=3, connect_retries=0)
    told: list[str] = []
    transport.on_retry = told.append
    with pytest.raises(TransientConnectError, match=r"Connection refused$"):
        transport.open()
    assert told == []
