"""Connections that fail for a passing reason (no route, refused, reset, timed out) are tried again, with backoff."""
from __future__ import annotations

import errno
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from provision.errors import InventoryError, TransientConnectError

T = TypeVar("T")

DEFAULT_RETRIES = 2       # more attempts after the first, unless the flag or the host says otherwise
MAX_RETRIES = 20
MAX_DELAY = 10.0          # seconds: the backoff doubles up to this
RETRY_VARIABLES = ("connect_retries", "ansible_ssh_retries")  # ours, and Ansible's ssh connection variable

# errno values that say the path to the host failed, not the host's answer (refused: sshd not up yet).
TRANSIENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET,
                              errno.ETIMEDOUT, errno.ECONNABORTED, errno.EHOSTDOWN, errno.ENETDOWN})
# What the OpenSSH client prints when the connection (or a gateway's forward) fails before any
# authentication; see ssh.c/sshconnect.c ("ssh: connect to host %s port %s: %s",
# "kex_exchange_identification: ...", "Connection timed out during banner exchange") and
# channels.c ("channel %d: open failed: %s: %s" for a -W forward). Host key and authentication
# failures never match: they are answers, and trying again cannot change them.
OPENSSH_TRANSIENT = (
    r"ssh: connect to host .* port \d+: (No route to host|Connection refused|Connection timed out|"
    r"Network is unreachable|Connection reset by peer|Operation timed out)"
    r"|kex_exchange_identification: (read: Connection reset by peer|Connection closed by remote host)"
    r"|ssh_exchange_identification: (read: Connection reset by peer|Connection closed by remote host)"
    r"|Connection timed out during banner exchange"
    r"|open failed: connect failed: (No route to host|Connection refused|Connection timed out|Network is unreachable)")
OPENSSH_NEVER = (r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|Permission denied"
                 r"|Too many authentication failures|No more authentication methods")



@dataclass(frozen=True)
class RetryPolicy:
    """How many more attempts a failed connection gets, and the first wait (doubling, capped at MAX_DELAY)."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 1.0

    def delays(self) -> Iterator[float]:
        for attempt in range(self.retries):
            yield min(self.backoff * 2 ** attempt, MAX_DELAY)


def check_retries(value: Any, where: str) -> int:
    """A retry count as given by a flag or a host variable: an integer 0..MAX_RETRIES, else InventoryError naming it."""
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) > MAX_RETRIES:
        raise InventoryError(f"{where}: connect retries must be a whole number from 0 to {MAX_RETRIES}, got {value!r}")
    return int(value)


def policy_for(host, default: RetryPolicy) -> RetryPolicy:
    """The host's own retry count (connect_retries or ansible_ssh_retries) wins over the run's."""
    for name in RETRY_VARIABLES:
        value = host.vars.get(name)
        if value not in (None, ""):
            return RetryPolicy(check_retries(value, f"host {host.name}, variable {name}"), default.backoff)
    return default


def transient_socket_error(exc: BaseException) -> bool:
    """Whether a socket-level failure of a connect may pass: refused, unreachable, reset, timed out."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return True
    errors = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError: one error per address tried
    if isinstance(errors, dict) and errors:
        return all(transient_socket_error(e) for e in errors.values())
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def openssh_transient(returncode: int, stderr: str) -> bool:
    """Whether an OpenSSH client run failed while connecting, for a reason that may pass."""
    # Patterns as text: re compiles (and caches) them when a failure is first read, not at every start.
    return returncode == 255 and not re.search(OPENSSH_NEVER, stderr) and bool(re.search(OPENSSH_TRANSIENT, stderr))


def with_retries(once: Callable[[], T], policy: RetryPolicy,
                 on_retry: Callable[[int, float, Exception], None] | None = None) -> T:
    """once(), tried again after each TransientConnectError while the policy has retries left.

    The last failure is raised with the number of attempts made; any other error is raised at once.
    """
    delays = list(policy.delays())
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            return once()
        except TransientConnectError as exc:
            if delay is None:
                if attempt == 1:
                    raise
                raise TransientConnectError(f"{exc} (gave up after {attempt} attempts)") from None
            if on_retry:
                on_retry(attempt, delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")
