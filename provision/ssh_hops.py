"""SSH hops on paramiko: a host as ~/.ssh/config resolves it, its gateways, and strict host keys on every hop.

connection.py imports this module only when it opens an SSH connection, so what connects to no
host (`invoke --list`, a local run, an inventory listing) never loads paramiko. It resolves a host
as fabric's Connection did for us before (fabric is no longer imported: it pulled in invoke's
runners, unittest.mock and asyncio for nothing provision used): `user@host:port` shorthand,
~/.ssh/config then /etc/ssh/ssh_config (HostName, User, Port, IdentityFile, ConnectTimeout,
ProxyJump, ProxyCommand), and a gateway reached as a direct-tcpip channel through the hop before it.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import io
import os
import socket
import sys
from pathlib import Path
from typing import Any

from provision.errors import ConnectError, HostKeyError


class _InvokeOnDemand:
    """Stands in for invoke inside paramiko.config: invoke loads when a `Match exec` line runs its command."""

    def run(self, *args: Any, **kwargs: Any):
        import invoke

        return invoke.run(*args, **kwargs)


def _import_paramiko():
    """paramiko, without the `import invoke` its ssh_config module makes at load for `Match exec` alone.

    invoke brings its runners, unittest.mock and asyncio (about 80 ms here, a sixth of a one-host
    no-op), and paramiko calls it only to run a `Match exec` command: invoke loads then
    (tests/test_ssh_hops.py evaluates one). Where invoke is loaded already (`invoke provision`), or
    paramiko is, this is a plain import.
    """
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        import paramiko
        return paramiko
    sys.modules["invoke"] = None  # paramiko.config's `import invoke` fails as if invoke were absent, which it allows
    try:
        import paramiko
    finally:
        if sys.modules.get("invoke", False) is None:
            del sys.modules["invoke"]
    if getattr(paramiko.config, "invoke", False) is None:
        paramiko.config.invoke = _InvokeOnDemand()
    return paramiko


paramiko = _import_paramiko()
from provision.known_hosts import load_for  # noqa: E402  (it imports paramiko: after the import above)

SSH_CONFIG_FILES = ("~/.ssh/config", "/etc/ssh/ssh_config")  # OpenSSH's order: the first value found wins
MAX_CONFIG_HOPS = 8  # ProxyJump hops from ssh_config, one behind the other (a longer chain is a loop)


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


def split_spec(spec: str) -> tuple[str | None, str | None, int | None]:
    """`user@host:port` as (user, host, port), None for a part not given; an address with two colons or
    more (IPv6) is all host."""
    user, _, hostport = spec.rpartition("@")
    if hostport.count(":") > 1:
        return user or None, hostport, None
    host, _, port = hostport.partition(":") if ":" in hostport else (hostport, "", "")
    return user or None, host or None, int(port) if port else None


def _config_signature() -> tuple:
    signature = []
    for path in map(os.path.expanduser, SSH_CONFIG_FILES):
        try:
            stat = os.stat(path)
            signature.append((path, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        except OSError:
            signature.append((path, None))
    return tuple(signature)


_parsed_config: list = [None, None]  # [signature, SSHConfig]: the files are parsed once while they stay the same


def read_ssh_config() -> paramiko.SSHConfig:
    """The user's ~/.ssh/config, then the system's /etc/ssh/ssh_config; a missing file is skipped.
    Parsed once for as long as neither file changes (a fleet run asks once per host)."""
    signature = _config_signature()
    if _parsed_config[0] == signature:
        return _parsed_config[1]
    config = paramiko.SSHConfig()
    for name in SSH_CONFIG_FILES:
        path = os.path.expanduser(name)
        if os.path.isfile(path):
            with open(path) as text:
                config.parse(text)
    _parsed_config[:] = [signature, config]
    return config


class _PromptAckSocket:
    """A TCP socket that acknowledges what it reads at once (Linux TCP_QUICKACK after each recv).

    sshd sends a host-keys notice right after authentication; Linux delays our ACK of it (40 ms),
    and sshd's answer to our first channel open waits behind it (Nagle's algorithm on its side):
    the facts round trip took 100 ms where 33 ms do. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:  # closing under us: the next recv says so
            pass
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _transport_without_delays(sock, **kwargs) -> paramiko.Transport:
    """paramiko's Transport, on a TCP socket with Nagle's algorithm off (TCP_NODELAY, as OpenSSH's ssh sets)
    and, on Linux, prompt ACKs.

    With Nagle on, a small SSH packet sent while the one before is not yet acknowledged waits for the
    peer's delayed ACK (40 ms on Linux): the handshake and every command's round trip paid that once
    or more (a no-op's `sh -s` round trip took 88 ms where 4 ms do). A gateway's channel or a
    ProxyCommand is no TCP socket of ours and is left as it is.
    """
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_QUICKACK"):
            sock = _PromptAckSocket(sock)
    return paramiko.Transport(sock, **kwargs)


def _local_user() -> str | None:
    try:
        return getpass.getuser()
    except KeyError:  # no user name for this uid (some containers): paramiko then asks the server as nobody
        return None


class SSHHop:
    """One SSH connection as ssh(1) would make it: ssh_config applied, through its gateway when it has one.

    `gateway` is the hop before this one (an SSHHop), a ProxyCommand line, or None for ssh_config's
    own ProxyJump or ProxyCommand (or a direct connection). Arguments given win over ssh_config.
    """

    def __init__(self, spec: str, ssh_config: paramiko.SSHConfig, user: str | None = None, port: int | None = None,
                 connect_timeout: float | None = None, connect_kwargs: dict[str, Any] | None = None,
                 gateway: SSHHop | str | None = None, depth: int = 0):
        spec_user, host, spec_port = split_spec(spec)
        if host is None:
            raise ConnectError(f"{spec!r}: no host to connect to")
        self.settings = ssh_config.lookup(host)
        self.original_host, self.host = host, self.settings["hostname"]
        self.user = user or spec_user or self.settings.get("user") or _local_user()
        self.port = port or spec_port or int(self.settings.get("port", 22))
        if connect_timeout is None and "connecttimeout" in self.settings:
            connect_timeout = float(self.settings["connecttimeout"])
        self.connect_timeout = connect_timeout
        self.connect_kwargs = dict(connect_kwargs or {})
        given = self.connect_kwargs.get("key_filename", [])
        keys = ([given] if isinstance(given, str) else list(given)) + list(self.settings.get("identityfile", []))
        if keys:
            self.connect_kwargs["key_filename"] = keys
        self.gateway = gateway if gateway is not None else self._configured_gateway(ssh_config, depth)
        self.client = paramiko.SSHClient()

    def _configured_gateway(self, ssh_config: paramiko.SSHConfig, depth: int) -> SSHHop | str | None:
        """ssh_config's ProxyJump (hops connected in the order written, as ssh -J does) or ProxyCommand."""
        if "proxyjump" in self.settings:
            if depth >= MAX_CONFIG_HOPS:
                raise ConnectError(f"{self.original_host}: ProxyJump chain in ssh_config too long (a loop?)")
            before: SSHHop | None = None
            for hop in self.settings["proxyjump"].split(","):
                hop = hop.strip()
                if split_spec(hop)[1] in (self.host, self.original_host):
                    return None  # we are our own jump host (a wildcard Host block): connect directly
                before = SSHHop(hop, ssh_config, gateway=before, depth=depth + 1)
                if before.connect_timeout is None:  # its own ConnectTimeout, else the one this hop waits
                    before.connect_timeout = self.connect_timeout
            return before
        return self.settings.get("proxycommand")

    def harden(self, label: str, known_hosts: Path, accept_new: bool) -> None:
        """Check host keys on this hop and every hop before it against known_hosts (never accept any key)."""
        hop: Any = self
        while isinstance(hop, SSHHop):
            hop.client.set_missing_host_key_policy(HostKeyPolicy(label, known_hosts, accept_new))
            load_for(hop.client.get_host_keys(), known_hosts, hop.host, hop.port)
            hop = hop.gateway

    def open(self) -> None:
        """Connect (the gateway first); paramiko's errors pass through for the caller to name."""
        if self.client.get_transport() is not None and self.client.get_transport().is_active():
            return
        kwargs = dict(self.connect_kwargs, username=self.user, hostname=self.host, port=self.port,
                      transport_factory=_transport_without_delays)
        if self.gateway is not None:
            kwargs["sock"] = self._gateway_socket()
        if self.connect_timeout:
            kwargs["timeout"] = self.connect_timeout
        if "key_filename" in kwargs and not kwargs["key_filename"]:
            del kwargs["key_filename"]
        self.client.connect(**kwargs)

    def _gateway_socket(self):
        if isinstance(self.gateway, str):  # %h, %p, %r and %% expanded for this hop
            config = paramiko.SSHConfig()
            config.parse(io.StringIO(f"Host {self.host}\n    ProxyCommand {self.gateway}"))
            return paramiko.ProxyCommand(config.lookup(self.host)["proxycommand"])
        self.gateway.open()
        return self.gateway.client.get_transport().open_channel(
            "direct-tcpip", dest_addr=(self.host, int(self.port)), src_addr=("", 0))

    def close(self) -> None:
        """Close this hop, then the hops before it."""
        self.client.close()
        if isinstance(self.gateway, SSHHop):
            self.gateway.close()
