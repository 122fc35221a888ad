"""User-data from the same roles: size budget, secrets never embedded by default, shellcheck-clean."""
from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
from email import message_from_bytes

import pytest

from provision.cli import userdata
from provision.inventory import load_inventory
from provision.roles import load_roles
from provision.userdata import LOG as USERDATA_LOG, STATE as USERDATA_STATE, UserDataError, build_userdata
from tests.helpers import PROJECT, roles_with, write

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
    assert len(data.body) <= 16384
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


# -- the promises, checked by running what the user-data would run ---------------------------------

SIZED = "a3f1"  # a marker the sized role writes


def small_project(tmp_path, declared: str, content_bytes: int = 0) -> tuple:
    """An inventory with host `box` (declared facts as given) and a role `t` whose command writes a secret."""
    write(tmp_path / "hosts" / "inventory.yml", f"""
        all:
          hosts:
            box: {{declared_facts: {declared}, t_token: {{secret_env: NGC_API_KEY}}, roles: [t]}}
    """)
    shutil.rmtree(tmp_path / "roles", ignore_errors=True)
    filler = random.Random(7).randbytes(content_bytes).hex()[:content_bytes]
    roles = roles_with(tmp_path, {"t": {
        "defaults.yml": f"t_root: /nonexistent\nt_token: ''\nt_filler: '{filler}'\n",
        "tasks.yml": """
            - name: Write the token where the test can read it
              command: {shell: "printf '%s' {{ t_token | secret_var }} > {{ t_root }}/token", creates: "{{ t_root }}/token"}
            - name: Sized content
              file: {path: "{{ t_root }}/filler", content: "{{ t_filler }}"}
        """}})
    return tmp_path / "hosts", roles


def heredoc(text: str, marker: str) -> str:
    """The body of the here-document ending at `marker` in the user-data shell."""
    start = text.index(f"<<'{marker}'\n") + len(f"<<'{marker}'\n")
    return text[start:text.index(f"\n{marker}\n", start) + 1]


def run_compiled(tmp_path, script: str, root) -> subprocess.CompletedProcess:
    (tmp_path / "run.sh").write_text(script)
    env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(tmp_path)}
    return subprocess.run(["sh", str(tmp_path / "run.sh")], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120)


def test_embed_secrets_puts_the_value_in_and_the_script_hands_it_over_intact(tmp_path):
    hosts, roles = small_project(tmp_path, "{os_id: ubuntu, os_version_id: '22.04', os_codename: jammy}")
    root = tmp_path / "root"
    root.mkdir()
    data = userdata(hosts, "box", None, {"t_root": str(root)}, "shell", True, roles)
    text = data.body.decode()
    assert PLANTED not in text
    done = run_compiled(tmp_path, heredoc(text, "PROV_USERDATA_SCRIPT"), root)
    assert "@@prov - finished" in done.stdout, done.stdout + done.stderr
    assert (root / "token").read_text() == PLANTED


def test_the_embedded_builder_key_decodes_to_the_value():
    embedded = shell_part(userdata(PROJECT / "hosts", "p3-builder", None, {}, "mime", True).body)
    [line] = [line for line in embedded.splitlines() if line.startswith("PROV_SECRET_ngc_login_api_key=")]
    done = subprocess.run(["sh", "-c", f'{line}\nprintf "%s" "$PROV_SECRET_ngc_login_api_key"'],
                          capture_output=True, text=True)
    assert done.stdout == PLANTED


def sized(tmp_path, fmt: str, target: int):
    """User-data of `fmt` whose body is within 600 bytes of `target` (found by measuring, not by the limit)."""
    def body_size(content: int) -> int:
        hosts, roles = small_project(tmp_path, "{os_id: ubuntu, os_version_id: '22.04', os_codename: jammy}", content)
        host = load_inventory(hosts).host("box")
        return len(build_userdata(load_roles(roles, ["t"]), host, {"t_root": "/r"}, fmt, True).body)
    low, high = 0, 4 * target
    while high - low > 64:
        middle = (low + high) // 2
        low, high = (middle, high) if body_size(middle) < target else (low, middle)
    size = body_size(low)
    assert abs(size - target) < 600, size
    hosts, roles = small_project(tmp_path, "{os_id: ubuntu, os_version_id: '22.04', os_codename: jammy}", low)
    return size, lambda: userdata(hosts, "box", None, {"t_root": "/r"}, fmt, True, roles)


@pytest.mark.parametrize("fmt", ["mime", "shell"])
def test_the_budget_is_ec2s_16384_bytes_in_both_formats(tmp_path, fmt):
    size, make = sized(tmp_path / "under", fmt, 16384 - 1500)
    assert make().budget_left == 16384 - size, "fits, and the budget left is counted from 16,384"
    size, make = sized(tmp_path / "over", fmt, 16384 + 1500)
    with pytest.raises(UserDataError, match=f"is {size:,} bytes, over EC2's 16,384-byte limit"):
        make()


BOOT_FACTS = "{os_id: ubuntu, os_version_id: '22.04', os_codename: jammy, arch: amd64, instance_type: p3.2xlarge}"


def boot(tmp_path, os_release: str, arch: str, gpu_devices: list[str]) -> tuple[str, str, bool]:
    """The user-data's boot script run here against a pretend instance; (status, log, whether the run started)."""
    hosts, roles = small_project(tmp_path, BOOT_FACTS)
    text = userdata(hosts, "box", None, {}, "shell", True, roles).body.decode()
    instance = tmp_path / "instance"
    state, pci, bin_dir = instance / "state", instance / "pci", instance / "bin"
    for folder in (state, pci, bin_dir):
        folder.mkdir(parents=True)
    write(instance / "os-release", os_release)
    write(bin_dir / "dpkg", f"#!/bin/sh\n[ \"$1\" = --print-architecture ] && echo {arch}\n").chmod(0o755)
    for number, device in enumerate(gpu_devices):
        write(pci / f"0000:00:{number:02x}.0" / "vendor", "0x10de\n")
        write(pci / f"0000:00:{number:02x}.0" / "device", f"{device}\n")
    write(state / "userdata-run.sh", f"touch {instance}/ran\necho '@@prov - finished'\n")
    script = heredoc(text, "PROV_USERDATA_BOOT")
    for real, pretend in ((USERDATA_LOG, instance / "log"), (USERDATA_STATE, state),
                          ("/etc/os-release", instance / "os-release"), ("/sys/bus/pci/devices", pci)):
        assert real in script
        script = script.replace(real, str(pretend))
    write(instance / "boot.sh", script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(instance / "boot.sh")], env=env, timeout=60)
    return (state / "userdata-status").read_text().strip(), (instance / "log").read_text(), (instance / "ran").exists()


UBUNTU_2204 = 'ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n'


def test_the_boot_script_runs_on_the_declared_instance(tmp_path):
    assert boot(tmp_path, UBUNTU_2204, "amd64", ["0x1db1"])[::2] == ("finished", True)


@pytest.mark.parametrize("os_release, arch, gpus, says", [
    ('ID=debian\nVERSION_ID="12"\n', "amd64", ["0x1db1"], "this instance is debian 12 amd64, but the user-data for box "
                                                         "was made for ubuntu 22.04 amd64"),
    (UBUNTU_2204, "arm64", ["0x1db1"], "this instance is ubuntu 22.04 arm64"),
    (UBUNTU_2204, "amd64", ["0x20b0"], "no NVIDIA GPU 10de:1db1 here (found: 0x20b0 ); the user-data for box was made "
                                       "for p3.2xlarge"),
    (UBUNTU_2204, "amd64", [], "no NVIDIA GPU 10de:1db1 here (found: none)"),
])
def test_the_boot_script_stops_on_another_os_architecture_or_gpu(tmp_path, os_release, arch, gpus, says):
    status, log, ran = boot(tmp_path, os_release, arch, gpus)
    assert (status, ran) == ("failed facts", False)
    assert f"provision: {says}" in log
