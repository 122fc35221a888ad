"""Small builders the tests share: a project of roles and an inventory in a temporary directory."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def roles_with(tmp: Path, extra_roles: dict[str, dict[str, str]] | None = None) -> Path:
    """A roles directory: the project's roles plus test roles given as {role: {file: text}}."""
    roles = tmp / "roles"
    shutil.copytree(PROJECT / "roles", roles)
    for role, files in (extra_roles or {}).items():
        for name, text in files.items():
            write(roles / role / name, text)
    return roles


def local_host(tmp_path: Path, monkeypatch, host_vars: str) -> Path:
    """tmp_path/root for a local-connection host `here` with HOST_VARS (YAML flow text, without braces);
    its inventory in tmp_path/hosts and the run state in tmp_path/state."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("PROVISION_STATE_DIR", str(tmp_path / "state"))
    write(tmp_path / "hosts" / "inventory.yml", f"""
        all:
          hosts:
            here: {{connection: local, {host_vars}}}
    """)
    return root
