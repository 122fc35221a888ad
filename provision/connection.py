"""Connections to hosts: SSH through fabric with strict host keys and timeouts, or the local machine."""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import fabric
import paramiko

from provision.errors import ConnectError, HostKeyError, TransientConnectError
from provision.inventory import Host, Inventory
from provision.secrets import Secret
from provision.retry import DEFAULT_RETRIES, RetryPolicy, policy_for, transient_socket_error, with_retries

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


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, naming the fingerprint; with accept_new, record them instead."""

    def __init__(self, label: str, record_to: Path, accept_new: bool):
        self.label, self.record_to, self.accept_new = label, record_to, accept_new

    def missing_host_key(self, client, hostname, key):
        if not self.accept_new:
            raise HostKeyError(
                f"{self.label}: unknown host key for {hostname}: {key.get_name()} {fingerprint(key)}; "
                f"if this is the host's key, run again with --accept-new to record it in {self.record_to}"
            )
        self.record_to.parent.mkdir(parents=True, exist_ok=True)
        with open(self.record_to, "a") as known:
            known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


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
        self._conn: fabric.Connection | None = None
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
            time.sleep(0.05)
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


def _connection(host: Host, inventory: Inventory, accept_new: bool, timeouts: Timeouts, depth: int = 0) -> fabric.Connection:
    """A fabric Connection for `host` whose every hop checks host keys and has timeouts."""
    if depth > 4:
        raise ConnectError(f"{host.name}: gateway chain too long (a loop?)")
    gateway = None
    if host.gateway:
        if host.gateway in inventory.host_vars:
            gateway = _connection(inventory.host(host.gateway), inventory, accept_new, timeouts, depth + 1)
        else:
            gateway = _plain_connection(host.gateway, inventory, accept_new, timeouts)
    connect_kwargs = {"banner_timeout": timeouts.connect, "auth_timeout": timeouts.connect}
    if host.ssh_key:
        connect_kwargs.update(key_filename=[os.path.expanduser(str(host.ssh_key))], look_for_keys=False, allow_agent=False)
    if host.login_password is not None:
        password = host.login_password
        connect_kwargs["password"] = password.value if isinstance(password, Secret) else str(password)
    if host.proxy_command:
        connect_kwargs["sock"] = proxy_socket(host)
    conn = fabric.Connection(host.address, user=host.user, port=host.port, connect_timeout=timeouts.connect,
                             connect_kwargs=connect_kwargs, gateway=gateway)
    _harden(conn, inventory, accept_new, host.name)
    return conn


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
    return paramiko.ProxyCommand(shlex.join(["sh", "-c", proxy_command_line(host)]))


def _plain_connection(spec: str, inventory: Inventory, accept_new: bool, timeouts: Timeouts) -> fabric.Connection:
    conn = fabric.Connection(spec, connect_timeout=timeouts.connect)
    _harden(conn, inventory, accept_new, spec)
    return conn


def _harden(conn: fabric.Connection, inventory: Inventory, accept_new: bool, label: str) -> None:
    """Replace fabric's accept-anything host key policy on this hop and any ProxyJump hops."""
    hop = conn
    while isinstance(hop, fabric.Connection):
        hop.client.set_missing_host_key_policy(HostKeyPolicy(label, inventory.known_hosts, accept_new))
        if inventory.known_hosts.exists():
            hop.client.get_host_keys().load(str(inventory.known_hosts))
        hop = hop.gateway
