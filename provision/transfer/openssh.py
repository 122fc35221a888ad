"""OpenSSH client command lines for inventory hosts: strict host keys, keepalives, gateways as ProxyCommand."""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from provision.inventory import Host, Inventory
from provision.errors import ShipError
from provision.retry import DEFAULT_RETRIES

# Fast AEAD ciphers first; the rest of the list keeps working with servers that lack them.
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr"
GATEWAY_SPEC = re.compile(r"^(?:(?P<user>[^@:\s]+)@)?(?P<host>[^@:\s]+)(?::(?P<port>\d+))?$")
MAX_HOPS = 4


@dataclass(frozen=True)
class SshOptions:
    """How long each wait may last: a cut link ends in an error after about alive_interval * alive_count."""

    connect_timeout: int = 10
    alive_interval: int = 2
    alive_count: int = 3
    connect_retries: int = DEFAULT_RETRIES  # more attempts when ssh fails to connect for a passing reason
    retry_backoff: float = 1.0              # seconds before the first retry; doubles each time

    @property
    def link_timeout(self) -> float:
        """Seconds after which ssh gives up on a silent server."""
        return float(self.alive_interval * (self.alive_count + 1))


@dataclass(frozen=True)
class Hop:
    """One SSH destination: where, as whom, with which key, and the hop in front of it."""

    label: str
    address: str
    user: str | None
    port: int | None
    key: str | None
    gateway: Hop | None
    proxy_command: str | None = None


def resolve_hop(host: Host, inventory: Inventory, depth: int = 0) -> Hop:
    """The host and its chain of gateways (inventory names or `user@host:port`)."""
    if depth > MAX_HOPS:
        raise ShipError(f"{host.name}: gateway chain longer than {MAX_HOPS} hops (a loop?)")
    gateway = None
    if host.gateway:
        if host.gateway in inventory.host_vars:
            gateway = resolve_hop(inventory.host(host.gateway), inventory, depth + 1)
        else:
            spec = GATEWAY_SPEC.match(str(host.gateway))
            if not spec:
                raise ShipError(f"{host.name}: gateway {host.gateway!r} is neither an inventory host nor user@host:port")
            port = int(spec["port"]) if spec["port"] else None
            gateway = Hop(str(host.gateway), spec["host"], spec["user"], port, host.ssh_key, None)
    key = os.path.expanduser(str(host.ssh_key)) if host.ssh_key else None
    return Hop(host.name, host.address, host.user, host.port, key, gateway, host.proxy_command)


def ssh_argv(hop: Hop, inventory: Inventory, options: SshOptions, remote_command: str | None = None,
             forward: str | None = None) -> list[str]:
    """`ssh ... DEST [COMMAND]` for the hop; with `forward` (`%h:%p`), a `-W` ProxyCommand instead."""
    argv = ["ssh", "-T", "-x", "-a",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + _token_safe(str(inventory.known_hosts)),
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={options.connect_timeout}",
            "-o", f"ServerAliveInterval={options.alive_interval}",
            "-o", f"ServerAliveCountMax={options.alive_count}",
            "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", "LogLevel=ERROR",
            "-c", CIPHERS]
    if hop.key:
        # as an option, not `-i`: ssh drops a `-i` path it cannot stat before expanding its `%%` tokens
        argv += ["-o", "IdentityFile=" + _token_safe(hop.key), "-o", "IdentitiesOnly=yes"]
    if hop.user:
        argv += ["-l", hop.user]
    if hop.port:
        argv += ["-p", str(hop.port)]
    if hop.gateway:
        argv += ["-o", "ProxyCommand=" + proxy_command(hop.gateway, inventory, options)]
    elif hop.proxy_command:  # the inventory's own ProxyCommand (ansible_ssh_common_args), as ssh takes it
        argv += ["-o", "ProxyCommand=" + hop.proxy_command]
    if forward:
        argv += ["-W", forward]
    argv += ["--", hop.address]
    if remote_command is not None:
        argv.append(remote_command)
    return argv


def proxy_command(gateway: Hop, inventory: Inventory, options: SshOptions) -> str:
    """A ProxyCommand string reaching %h:%p through `gateway`; `%` of nested hops escaped as `%%`."""
    argv = ssh_argv(gateway, inventory, options, forward="%h:%p")
    return " ".join(word if word == "%h:%p" else shlex.quote(word).replace("%", "%%") for word in argv)


def sh_command(script: str, *args: str) -> str:
    """One remote command line running `script` under POSIX sh with `args` as $1.. (all quoted)."""
    return shlex.join(["sh", "-c", script, "ship", *args])


def _token_safe(path: str) -> str:
    """A path as ssh options take it: ssh expands `%` tokens in key and known_hosts paths."""
    return path.replace("%", "%%")
