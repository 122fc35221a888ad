"""User-data from the same roles: size budget, secrets never embedded by default, shellcheck-clean."""
from __future__ import annotations

import gzip
import shutil
import subprocess
from email import message_from_bytes

import pytest

from provision.cli import userdata
from provision.inventory import load_inventory
from provision.roles import load_roles
from provision.userdata import EC2_LIMIT, UserDataError, build_userdata
from tests.helpers import PROJECT

PLANTED = "nvapi-PLANTED-never-in-user-data-42"
SSM = {"ngc_login_api_key": {"secret_ssm": "/ngc/api-key"}}


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv("NGC_API_KEY", PLANTED)


def shell_part(body: bytes) -> str:
    message = message_from_bytes(gzip.decompress(body))
    parts = [p for p in message.walk() if p.get_content_type() == "text/x-shellscript"]
    assert len(parts) == 1
    return parts[0].get_payload(decode=True).decode()


def test_full_builder_stack_fits_in_ec2_user_data_with_the_key_read_at_boot():
    data = userdata(PROJECT / "hosts", "p3-builder", None, SSM, "mime", False)
    assert len(data.body) <= EC2_LIMIT
    text = shell_part(data.body)
    assert "aws ssm get-parameter --with-decryption --name /ngc/api-key" in text
    assert PLANTED not in text and PLANTED.encode() not in data.body
    assert [p.task.role for p in data.plan.steps][-1] == "verify"
    assert "ubuntu-drivers install --gpgpu nvidia:580-server" in text, "p3.2xlarge: a V100, so 580"


def test_a_secret_without_a_boot_time_source_is_refused_unless_embedding_is_asked_for():
    with pytest.raises(UserDataError, match="secret ngc_login_api_key has no boot-time source"):
        userdata(PROJECT / "hosts", "p3-builder", None, {}, "mime", False)
    embedded = userdata(PROJECT / "hosts", "p3-builder", None, {}, "mime", True)
    assert PLANTED not in shell_part(embedded.body), "embedded values travel base64-encoded, not in clear"


def test_over_budget_is_refused_naming_the_largest_steps():
    with pytest.raises(UserDataError, match=r"over EC2's 16,384-byte limit; largest steps: .*\(\d[\d,]* bytes\)"):
        userdata(PROJECT / "hosts", "p3-builder", None, SSM, "shell", False)


def test_undeclared_facts_are_refused():
    with pytest.raises(UserDataError, match="hpc01: user-data needs declared_facts"):
        userdata(PROJECT / "hosts", "hpc01", "helper_tools", {}, "mime", False)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by scripts/setup.sh")
def test_the_shell_form_passes_shellcheck(tmp_path):
    host = load_inventory(PROJECT / "hosts").host("p3-builder")
    roles = load_roles(PROJECT / "roles", host.vars["roles"])
    data = build_userdata(roles, host, SSM, "shell")
    script = tmp_path / "user-data.sh"
    script.write_bytes(data.body)
    run = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
