"""Secrets: read on the controller from the environment or a file, redacted from every output."""
from __future__ import annotations

import os
import re
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

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({self.name})"

    def __bool__(self) -> bool:
        return bool(self.value)


def secret_shell_name(name: str) -> str:
    return "PROV_SECRET_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def resolve_secrets(variables: dict[str, Any], host: str) -> dict[str, Any]:
    """Replace `{secret_env: NAME}` / `{secret_file: PATH}` values with Secrets read here."""
    resolved = dict(variables)
    for key, value in variables.items():
        if isinstance(value, dict) and set(value) & {"secret_env", "secret_file"}:
            resolved[key] = _read(key, value, host)
    return resolved


def _read(key: str, ref: dict, host: str) -> Secret:
    if "secret_env" in ref:
        name = str(ref["secret_env"])
        if name not in os.environ:
            if ref.get("optional"):
                return Secret(key)
            raise ProvisionError(f"host {host}: variable {key} wants the secret from environment variable {name}, which is not set")
        return Secret(key, os.environ[name].strip())
    path = Path(str(ref["secret_file"])).expanduser()
    try:
        return Secret(key, path.read_text().strip())
    except OSError as exc:
        if ref.get("optional"):
            return Secret(key)
        raise ProvisionError(f"host {host}: variable {key} wants the secret in {path}: {exc.strerror}") from None


def redactor(secrets: list[Secret]):
    """A function that replaces every secret value in a text with ***."""
    values = sorted({s.value for s in secrets if s.value}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            text = text.replace(value, REDACTED)
        return text

    return redact
