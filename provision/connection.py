"""Connections to hosts: SSH through paramiko with strict host keys and timeouts, or the local machine.

The SSH stack (paramiko, provision.ssh_hops) loads when a host is first connected, not on import.
"""
from __future__ import annotations

import getpass
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from provision.errors import ConnectError, HostKeyError, TransientConnectError
from provision.inventory import Host, Inventory
from provision.secrets import Secret
from provision.retry import DEFAULT_RETRIES, RetryPolicy, policy_for, transient_socket_error, with_retries

if TYPE_CHECKING:
    import paramiko

    from provision.ssh_hops import SSHHop

LineHandler = Callable[[str], None]


@dataclass(frozen=True)
class Timeouts:
    """Every wait has a bound: a cut link ends in an error, never a hang."""

    connect: float = 15.0
    command: float = 3600.0
    keepalive_interval: float = 3.0
    keepalive_timeout: float = 12.0
    connect_retries: int = DEFAULT_RETRIES  # more attempts for a connect that fails for a passing reason
    retry_backoff: float = 1.0              # seconds before the first retry; doubles each time


class LinkWatch(threading.Thread):
    """Pings the far sshd with a request that needs an answer; no answer in time means the link is lost."""

    def __init__(self, transport: paramiko.Transport, timeouts: Timeouts):
        super().__init__(daemon=True)
        self.transport, self.timeouts = transport, timeouts
        self.lost = False
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.timeouts.keepalive_interval):
            answered = threading.Event()

            def ping() -> None:
                try:
                    self.transport.global_request("keepalive@openssh.com", wait=True)
                finally:
                    answered.set()

            threading.Thread(target=ping, daemon=True).start()
            if not answered.wait(self.timeouts.keepalive_timeout) and not self._stop.is_set():
                self.lost = True
                self.transport.close()
                return

    def stop(self) -> None:
        self._stop.set()


class SSHTransport:
    """One host over SSH: run a command with a script on stdin, stream its output lines back."""

    def __init__(self, host: Host, inventory: Inventory, accept_new: bool = False, timeouts: Timeouts = Timeouts()):
        self.host, self.inventory, self.accept_new, self.timeouts = host, inventory, accept_new, timeouts
        self.exec_count = 0
        self.on_retry: Callable[[str], None] | None = None  # told of each retry (the live view shows it)
        self._conn: SSHHop | None = None
        self._watch: LinkWatch | None = None

    @property
    def label(self) -> str:
        port = f":{self.host.port}" if self.host.port else ""
        return f"{self.host.name} ({self.host.address}{port})"

    def open(self) -> None:
        """Connect (through the gateway when there is one), checking the host key; retry what may pass."""
        policy = policy_for(self.host, RetryPolicy(self.timeouts.connect_retries, self.timeouts.retry_backoff))
        with_retries(self._open_once, policy, self._retrying)

    def _retrying(self, attempt: int, delay: float, exc: Exception) -> None:
        if self.on_retry:
            self.on_retry(f"connect attempt {attempt} failed, again in {delay:g}s: {str(exc).split(': ', 1)[-1][:80]}")

    def _open_once(self) -> None:
        self._conn = _connection(self.host, self.inventory, self.accept_new, self.timeouts)
        try:
            self._conn.open()
        except BaseException as exc:
            error = self._connect_error(exc)
            self.close()
            raise error from None
        transport = self._conn.client.get_transport()
        self._watch = LinkWatch(transport, self.timeouts)
        self._watch.start()

    def _connect_error(self, exc: BaseException) -> BaseException:
        """The error a failed connect becomes: TransientConnectError when it may pass, never for keys or auth."""
        from provision.ssh_hops import fingerprint, paramiko

        try:
            raise exc
        except HostKeyError:
            return exc
        except paramiko.BadHostKeyException as exc:
            return HostKeyError(
                f"{self.label}: host key CHANGED: got {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)}; remove the old line if the host was rebuilt")
        except paramiko.AuthenticationException as exc:
            return ConnectError(f"{self.label}: authentication failed for user {self._conn.user}: {exc}")
        except (socket.timeout, TimeoutError):
            return TransientConnectError(f"{self.label}: connection timed out after {self.timeouts.connect:g}s")
        except paramiko.ChannelException as exc:  # a gateway could not reach the host: code 2 is "connect failed"
            kind = TransientConnectError if exc.code == 2 else ConnectError
            return kind(f"{self.label}: cannot connect through the gateway: {exc}")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            # A reset or closed connection before the banner is a passing failure (sshd restarting, link just up).
            passing = transient_socket_error(exc) or isinstance(exc, EOFError) or "protocol banner" in str(exc)
            kind = TransientConnectError if passing else ConnectError
            return kind(f"{self.label}: cannot connect: {_reason(exc)}")
        except BaseException:
            return exc

    def run(self, command: str, stdin: str, on_line: LineHandler, timeout: float | None = None) -> int:
        """Run `command` with `stdin`; call on_line for each stdout line; return the exit status."""
        if self._conn is None:
            self.open()
        from provision.ssh_hops import paramiko

        limit = timeout or self.timeouts.command
        transport = self._conn.client.get_transport()
        try:
            channel = transport.open_session(timeout=self.timeouts.connect)
            self.exec_count += 1
            channel.exec_command(command)
            channel.sendall(stdin.encode())
            channel.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(f"could not start {command!r}: {exc or type(exc).__name__}") from None
        return self._read(channel, on_line, time.monotonic() + limit, limit)

    def _read(self, channel: paramiko.Channel, on_line: LineHandler, deadline: float, limit: float) -> int:
        channel.settimeout(0.5)
        pending, errors = b"", b""
        while True:
            if self._watch.lost:
                raise self._lost(f"link lost: no answer from sshd for {self.timeouts.keepalive_timeout:g}s")
            if time.monotonic() > deadline:
                channel.close()
                raise ConnectError(f"{self.label}: command did not finish within {limit:g}s")
            while channel.recv_stderr_ready():
                errors += channel.recv_stderr(65536)
            try:
                data = channel.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                on_line(line.decode(errors="replace"))
        if pending:
            on_line(pending.decode(errors="replace"))
        while not channel.exit_status_ready():
            if self._watch.lost or time.monotonic() > deadline:
                raise self._lost("link lost before the exit status arrived")
            channel.status_event.wait(0.05)  # returns as the status arrives (it often lands just after the EOF)
        while channel.recv_stderr_ready():
            errors += channel.recv_stderr(65536)
        self.last_stderr = errors.decode(errors="replace")
        status = channel.recv_exit_status()
        if self._watch.lost:
            raise self._lost(f"link lost: no answer from sshd for {self.timeouts.keepalive_timeout:g}s")
        if status == -1:
            raise self._lost("the session ended without an exit status (sshd gone?)")
        return status

    def _lost(self, why: str) -> ConnectError:
        self.close()
        return ConnectError(f"{self.label}: {why}")

    def close(self) -> None:
        if self._watch:
            self._watch.stop()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a dead link must not mask the error that killed it
                pass
        self._conn = None


def _reason(exc: BaseException) -> str:
    """Why a connect failed, in the system's words (paramiko wraps one error per address it tried)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return "; ".join(sorted({getattr(e, "strerror", None) or str(e) for e in errors.values()}))
    return str(exc) or type(exc).__name__


class LocalTransport:
    """The machine provision runs on, through a local sh: same interface as SSHTransport."""

    def __init__(self, host: Host, timeouts: Timeouts = Timeouts()):
        self.host, self.timeouts = host, timeouts
        self.exec_count = 0
        self.on_retry = None
        self.label = f"{host.name} (local)"
        self.last_stderr = ""

    def open(self) -> None:
        return None

    def run(self, command: str, stdin: str, on_line: LineHandler, timeout: float | None = None) -> int:
        self.exec_count += 1
        process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(stdin, timeout=timeout or self.timeouts.command)
        except subprocess.TimeoutExpired:
            process.kill()
            raise ConnectError(f"{self.label}: command did not finish within {timeout or self.timeouts.command:g}s") from None
        for line in out.splitlines():
            on_line(line)
        self.last_stderr = err
        return process.returncode

    def close(self) -> None:
        return None


def open_transport(host: Host, inventory: Inventory, accept_new: bool = False, timeouts: Timeouts = Timeouts()):
    """The transport the inventory asks for: `connection: local` or SSH (the default)."""
    if host.transport == "local":
        return LocalTransport(host, timeouts)
    if host.transport != "ssh":
        raise ConnectError(f"{host.name}: unknown connection type {host.transport!r} (ssh or local)")
    return SSHTransport(host, inventory, accept_new, timeouts)


def _connection(host: Host, inventory: Inventory, accept_new: bool, timeouts: Timeouts, depth: int = 0) -> SSHHop:
    """The SSH hop for `host` (its gateway chain behind it), every hop checking host keys and with timeouts."""
    from provision.ssh_hops import SSHHop, read_ssh_config

    if depth > 4:
        raise ConnectError(f"{host.name}: gateway chain too long (a loop?)")
    ssh_config = read_ssh_config()
    gateway = None
    if host.gateway:
        if host.gateway in inventory.host_vars:
            gateway = _connection(inventory.host(host.gateway), inventory, accept_new, timeouts, depth + 1)
        else:
            gateway = SSHHop(host.gateway, ssh_config, connect_timeout=timeouts.connect)
            gateway.harden(host.gateway, inventory.known_hosts, accept_new)
    connect_kwargs = {"banner_timeout": timeouts.connect, "auth_timeout": timeouts.connect}
    if host.ssh_key:
        connect_kwargs.update(key_filename=[os.path.expanduser(str(host.ssh_key))], look_for_keys=False, allow_agent=False)
    if host.login_password is not None:
        password = host.login_password
        connect_kwargs["password"] = password.value if isinstance(password, Secret) else str(password)
    if host.proxy_command:
        connect_kwargs["sock"] = proxy_socket(host)
    hop = SSHHop(host.address, ssh_config, user=host.user, port=host.port, connect_timeout=timeouts.connect,
                 connect_kwargs=connect_kwargs, gateway=gateway)
    hop.harden(host.name, inventory.known_hosts, accept_new)
    return hop


def proxy_command_line(host: Host) -> str:
    """The host's ssh ProxyCommand with OpenSSH's %h, %p, %r and %% expanded, run by sh as OpenSSH does."""
    tokens = {"h": host.address, "p": str(host.port or 22), "r": host.user or getpass.getuser(), "%": "%", "n": host.name}

    def expand(found: re.Match) -> str:
        if found.group(1) not in tokens:
            raise ConnectError(f"{host.name}: ProxyCommand token %{found.group(1)} is not supported (%h %p %r %n %%)")
        return tokens[found.group(1)]

    return "exec " + re.sub(r"%(.)", expand, str(host.proxy_command))


def proxy_socket(host: Host) -> paramiko.ProxyCommand:
    """A socket through the host's ProxyCommand (started now; closed with the connection)."""
    from provision.ssh_hops import paramiko

    return paramiko.ProxyCommand(shlex.join(["sh", "-c", proxy_command_line(host)]))
