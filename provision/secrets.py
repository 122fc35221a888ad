"""Secrets: read on the controller from the environment or a file, redacted from every output."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import ProvisionError

REDACTED = "***"


@dataclass(frozen=True)
class Secret:
    """A secret value; its str and repr never show it."""

    name: str
    value: str = ""
    ssm_parameter: str = ""

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.name})"

    def __bool__(self) -> bool:
        return bool(self.value)


def secret_shell_name(name: str) -> str:
    return "PROV_SECRET_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


# A secret rendered into a role's text becomes this marker; a file's content turns it back into
# the value on the host (from its shell variable), everything shown turns it into ***.
MARKER = re.compile("\x00PROV_SECRET:([^\x00]+)\x00")
MARKER_BYTES = re.compile(b"\x00PROV_SECRET:([^\x00]+)\x00")


def secret_marker(name: str) -> str:
    return f"\x00PROV_SECRET:{name}\x00"


def shown(text: str) -> str:
    """Text with every secret marker as ***."""
    return MARKER.sub(REDACTED, text)


def resolve_secrets(variables: dict[str, Any], host: str, fetch_ssm: bool = True) -> dict[str, Any]:
    """Replace `{secret_env: NAME}` / `{secret_file: PATH}` / `{secret_ssm: /path}` values with Secrets.

    env and file are read here; an SSM parameter is read here with the AWS CLI only when
    `fetch_ssm` (SSH runs), and left as a reference for user-data, which reads it at boot.
    """
    resolved = dict(variables)
    for key, value in variables.items():
        if isinstance(value, Secret):
            continue
        if isinstance(value, dict) and set(value) & {"secret_env", "secret_file", "secret_ssm"}:
            resolved[key] = _read(key, value, host, fetch_ssm)
    return resolved


def _read(key: str, ref: dict, host: str, fetch_ssm: bool) -> Secret:
    if "secret_ssm" in ref:
        parameter = str(ref["secret_ssm"])
        return Secret(key, _ssm(parameter, key, host) if fetch_ssm else "", parameter)
    if "secret_env" in ref:
        name = str(ref["secret_env"])
        if name not in os.environ:
            if ref.get("optional"):
                return Secret(key)
            raise ProvisionError(f"host {host}: variable {key} wants the secret from environment variable {name}, which is not set")
        return Secret(key, os.environ[name].strip())
    path = Path(str(ref["secret_file"])).expanduser()
    try:
        _refuse_open_permissions(path, key, host)
        return Secret(key, path.read_text().strip())
    except OSError as exc:
        if ref.get("optional"):
            return Secret(key)
        raise ProvisionError(f"host {host}: variable {key} wants the secret in {path}: {exc.strerror}") from None


def _refuse_open_permissions(path: Path, key: str, host: str) -> None:
    """Like OpenSSH with a private key: a secret file others can read (or write) is refused."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        who = {(True, True): "group and others", (True, False): "its group"}.get((bool(mode & 0o070), bool(mode & 0o007)), "others")
        raise ProvisionError(f"host {host}: variable {key}: {path} is open to {who} (mode {mode:04o}); "
                             f"a secret file must be yours alone: chmod 600 {path}")


def redactor(secrets: list[Secret]):
    """A function that replaces every secret value in a text with ***."""
    values = sorted({s.value for s in secrets if s.value}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            text = text.replace(value, REDACTED)
        return text

    return redact


def _ssm(parameter: str, key: str, host: str) -> str:
    """An SSM SecureString read with the AWS CLI on this machine (its value only on stdout)."""
    command = ["aws", "ssm", "get-parameter", "--with-decryption", "--name", parameter,
               "--query", "Parameter.Value", "--output", "text"]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"host {host}: variable {key} wants SSM parameter {parameter}: {exc}") from None
    if run.returncode != 0:
        raise ProvisionError(f"host {host}: variable {key}: aws ssm get-parameter {parameter} failed: {run.stderr.strip()[-300:]}")
    return run.stdout.strip()
