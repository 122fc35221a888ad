"""Unit tests of invoke pull: sources, names, the credential kept to stdin, the record beside the SIF (local sh)."""
import hashlib
import os

import pytest

from provision.cluster.pull import default_name, login_script, pull, source_of
from provision.cluster.slurm import ClusterError
from tests.test_cluster import write_inventory

PASSWORD = "pw-$(touch /tmp/x)-'\"-secret"

# A recording apptainer for the unit tests only: it keeps its argv and stdin, and `pull` writes the target.
RECORDING_APPTAINER = """#!/bin/sh
printf '%s\\n' "$*" >> "$LOG_DIR/argv"
case "$1 $2" in
  "registry login") cat > "$LOG_DIR/stdin" ;;
  pull*) shift; while [ "${1#--}" != "$1" ]; do shift; done; printf 'pulled %s' "$2" > "$1" ;;
esac
"""


def test_sources_and_names_follow_apptainer_pull(tmp_path):
    assert source_of("docker://nvcr.io/nvidia/pytorch:25.06-py3", tmp_path) == "docker://nvcr.io/nvidia/pytorch:25.06-py3"
    assert default_name("docker://nvcr.io/nvidia/pytorch:25.06-py3") == "pytorch_25.06-py3"
    assert default_name("docker://user/img") == "img_latest"
    with pytest.raises(ClusterError, match="a docker://REGISTRY/REPOSITORY:TAG reference"):
        source_of("docker://x/y;rm -rf ~", tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "recipe.yml").write_text("name: app\ntag: '1'\nbase: debian:12\ngpu_architectures: [volta]\n"
                                                 "registry: reg.example:5000/team\n")
    assert source_of("app", tmp_path) == "docker://reg.example:5000/team/app:1"


def test_the_password_is_in_a_heredoc_never_in_a_command_word(monkeypatch):
    monkeypatch.setenv("REG_PW", PASSWORD)
    logins = {"registry_logins": {"reg.example:5000": {"username": "me", "password": {"secret_env": "REG_PW"}}}}
    script, secrets = login_script("reg.example:5000", logins, "hpc")
    first_line, rest = script.split("\n", 1)
    assert PASSWORD not in first_line and rest.startswith(PASSWORD + "\n") and secrets == [PASSWORD]
    assert "registry login --username me --password-stdin docker://reg.example:5000" in first_line
    assert login_script("other.example", logins, "hpc") == ("", [])


def test_a_pull_on_the_login_node_logs_in_on_stdin_and_records_the_sha256(tmp_path, monkeypatch):
    bin_dir, sif_dir, logs = tmp_path / "bin", tmp_path / "containers", tmp_path / "logs"
    for directory in (bin_dir, logs):
        directory.mkdir()
    (bin_dir / "apptainer").write_text(RECORDING_APPTAINER)
    (bin_dir / "apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LOG_DIR", str(logs))
    monkeypatch.setenv("REG_PW", PASSWORD)
    inventory = write_inventory(tmp_path, {"hpc": {
        "connection": "local", "sif_dir": str(sif_dir), "apptainer_cachedir": str(tmp_path / "cache"),
        "registry_logins": {"reg.example:5000": {"username": "me", "password": {"secret_env": "REG_PW"}}}}})
    (sif_dir).mkdir()
    (sif_dir / ".img_1.sif.ship").write_text("stale sidecar of an earlier file\n")
    lines: list[str] = []
    result = pull("docker://reg.example:5000/team/img:1", "hpc", inventory, on_login=True, nohttps=True,
                  on_line=lines.append)
    sif = sif_dir / "img_1.sif"
    sha = hashlib.sha256(sif.read_bytes()).hexdigest()
    assert result.sha256 == sha and result.sif_path == str(sif.resolve())
    assert (sif_dir / ".img_1.sif.sha256").read_text().split()[0] == sha
    assert not (sif_dir / ".img_1.sif.ship").exists() and (tmp_path / "cache").is_dir()
    assert (logs / "stdin").read_text().strip() == PASSWORD
    argv = (logs / "argv").read_text()
    assert PASSWORD not in argv and "pull --no-https --force" in argv
    assert not any(PASSWORD in line for line in lines)
