"""Ansible's connection and become variables, read for what they mean to us or refused in one line."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from provision.errors import InventoryError

# Follows the ssh connection plugin (lib/ansible/plugins/connection/ssh.py: ssh_common_args and
# ssh_extra_args are appended after Ansible's own -o Port/User/IdentityFile, and ssh keeps the first
# value it gets for an option, so ansible_port, ansible_user and the key file win) and the sudo
# become plugin (lib/ansible/plugins/become/sudo.py) of ansible-core 2.19.
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args")
CONNECTIONS = {"ssh": "ssh", "smart": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh", "ansible.builtin.ssh": "ssh",
               "ansible.builtin.paramiko_ssh": "ssh", "local": "local", "ansible.builtin.local": "local"}
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass", "ansible_sudo_password")
LOGIN_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
# -o options that change nothing about where or as whom we connect: accepted and left to our own settings.
HARMLESS_OPTIONS = {"controlmaster", "controlpersist", "controlpath", "serveraliveinterval", "serveralivecountmax",
                    "connecttimeout", "compression", "loglevel", "identitiesonly", "preferredauthentications",
                    "pubkeyauthentication", "passwordauthentication", "kbdinteractiveauthentication",
                    "gssapiauthentication", "tcpkeepalive", "connectionattempts", "addkeystoagent", "batchmode",
                    "forwardagent", "forwardx11", "requesttty", "hashknownhosts", "ciphers", "kexalgorithms", "macs",
                    "hostkeyalgorithms", "pubkeyacceptedkeytypes", "pubkeyacceptedalgorithms"}
HARMLESS_FLAGS = {"-q", "-C", "-T", "-x", "-a", "-4", "-6", "-v", "-vv", "-vvv", "-n", "-N", "-A", "-X", "-Y", "-t", "-tt"}


@dataclass(frozen=True)
class SshArgs:
    """What ansible_ssh_common_args / _extra_args / _args ask for, in our terms."""

    proxy_command: str | None = None
    proxy_jump: str | None = None
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    hostname: str | None = None
    ignored: tuple[str, ...] = field(default_factory=tuple)


def parse_ssh_args(variables: dict[str, Any], host: str) -> SshArgs:
    """Read the ssh argument variables; what we cannot honour raises InventoryError naming host and value."""
    found: dict[str, Any] = {}
    ignored: list[str] = []
    for var in SSH_ARGS_VARS:
        text = variables.get(var)
        if text in (None, ""):
            continue
        try:
            words = shlex.split(str(text))
        except ValueError as exc:
            raise InventoryError(f"host {host}: {var} {text!r}: cannot split: {exc}") from None
        index = 0
        while index < len(words):
            word = words[index]
            value = words[index + 1] if index + 1 < len(words) else None
            if word in HARMLESS_FLAGS:
                ignored.append(word)
                index += 1
                continue
            flag, attached = word[:2], word[2:]
            if flag in ("-o", "-J", "-p", "-l", "-i") and word.startswith("-"):
                argument = attached or value
                if argument is None:
                    raise InventoryError(f"host {host}: {var}: {flag} needs a value in {text!r}")
                index += 1 if attached else 2
                _take(flag, argument, found, ignored, host, var)
                continue
            raise InventoryError(f"host {host}: {var}: cannot honour {word!r} in {text!r} "
                                 "(we honour -o ProxyCommand/ProxyJump/Port/User/IdentityFile/HostName, -J, -p, -l, -i)")
    return SshArgs(found.get("proxycommand"), found.get("proxyjump"), found.get("port"), found.get("user"),
                   found.get("identityfile"), found.get("hostname"), tuple(ignored))


def _take(flag: str, argument: str, found: dict, ignored: list, host: str, var: str) -> None:
    if flag == "-o":
        key, sep, value = argument.partition("=")
        if not sep:
            key, _, value = argument.partition(" ")
        key, value = key.strip().lower(), value.strip()
    else:
        key, value = {"-J": "proxyjump", "-p": "port", "-l": "user", "-i": "identityfile"}[flag], argument
    if key in HARMLESS_OPTIONS:
        ignored.append(f"-o {argument}")
        return
    if key not in ("proxycommand", "proxyjump", "port", "user", "identityfile", "hostname"):
        raise InventoryError(f"host {host}: {var}: cannot honour ssh option {argument!r} "
                             "(host keys are always checked: record a new key with --accept-new)"
                             if key in ("stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile")
                             else f"host {host}: {var}: cannot honour ssh option {argument!r}")
    if key in found:
        return  # ssh keeps the first value it is given
    if key == "port":
        if not value.isdigit():
            raise InventoryError(f"host {host}: {var}: port {value!r} is not a number")
        found[key] = int(value)
    elif key == "proxyjump" and "," in value:
        raise InventoryError(f"host {host}: {var}: ProxyJump through several hops ({value}): "
                             "give the last hop its own gateway in the inventory instead")
    elif key == "proxycommand" and value.lower() == "none":
        found[key] = None
    else:
        found[key] = value


@dataclass(frozen=True)
class Become:
    """How the script becomes root (or become_user): always through sudo; a password goes on sudo's stdin."""

    user: str = "root"
    password: Any = None


def become_settings(variables: dict[str, Any], host: str) -> Become:
    """ansible_become_* read for sudo; another method or a malformed value raises InventoryError."""
    method = variables.get("ansible_become_method") or "sudo"
    if str(method) not in ("sudo", "ansible.builtin.sudo"):
        raise InventoryError(f"host {host}: ansible_become_method {method!r}: only sudo is supported")
    exe = variables.get("ansible_become_exe")
    if exe not in (None, "", "sudo"):
        raise InventoryError(f"host {host}: ansible_become_exe {exe!r}: only sudo is supported")
    user = variables.get("ansible_become_user") or "root"
    if not isinstance(user, str) or not user.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InventoryError(f"host {host}: ansible_become_user {user!r} is not a user name")
    password = next((variables[v] for v in BECOME_PASSWORD_VARS if variables.get(v) not in (None, "")), None)
    return Become(user, password)


def connection_type(variables: dict[str, Any], host: str) -> str:
    """ssh or local, from connection / ansible_connection; any other type raises InventoryError."""
    value = next((variables[k] for k in ("connection", "ansible_connection") if variables.get(k) not in (None, "")), "ssh")
    if str(value) not in CONNECTIONS:
        raise InventoryError(f"host {host}: connection type {value!r} is not supported (ssh or local)")
    return CONNECTIONS[str(value)]
