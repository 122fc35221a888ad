"""The GPU roles read preflight's decision: the right driver for the GPUs found, refusals before any script runs."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from provision.compiler import plan_host, render_script
from provision.facts import EXAMPLE_FACTS
from provision.gpu.preflight import PreflightError
from provision.inventory import Host
from provision.roles import load_roles
from tests.helpers import PROJECT

BUILDER = ["base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer", "ngc_login", "verify"]
V100 = {**EXAMPLE_FACTS, "gpus": [{"slot": "0000:00:1e.0", "pci_id": "10de:1db1", "class": "0x030200"}]}
T4 = {**EXAMPLE_FACTS, "gpus": [{"slot": "0000:00:1e.0", "pci_id": "10de:1eb8", "class": "0x030200"}]}


def plan(facts, **variables):
    roles = load_roles(PROJECT / "roles", BUILDER)
    return plan_host(roles, Host("h", {"ngc_login_api_key": {"secret_env": "NGC_TEST_KEY"}, **variables}, []), {}, facts)


def changes(facts, **variables) -> list[str]:
    return [p.step.change for p in plan(facts, **variables).steps]


@pytest.fixture(autouse=True)
def ngc_key(monkeypatch):
    monkeypatch.setenv("NGC_TEST_KEY", "nvapi-planted-secret-0123456789")


def test_v100_gets_the_580_proprietary_driver_through_ubuntu_drivers():
    assert "run ubuntu-drivers install --gpgpu nvidia:580-server" in changes(V100)


def test_t4_gets_open_modules_on_the_current_branch():
    steps = changes(T4)
    assert any(c.startswith("run ubuntu-drivers install --gpgpu nvidia:") and c.endswith("-server-open") for c in steps)


def test_cuda_repo_route_pins_the_branch_before_the_driver():
    steps = changes(T4, nvidia_driver_route="cuda-repo")
    pin = next(i for i, c in enumerate(steps) if c.startswith("install nvidia-driver-pinning-"))
    driver = steps.index("install nvidia-open and hold them")
    assert pin < driver


def test_impossible_requests_are_refused_before_any_script():
    with pytest.raises(PreflightError, match="use nvidia_driver_branch: 580"):
        plan(V100, nvidia_driver_branch="590")
    with pytest.raises(PreflightError, match="open"):
        plan(V100, nvidia_driver_flavour="open")


def test_no_gpu_means_no_driver_and_no_gpu_checks():
    steps = changes({**EXAMPLE_FACTS, "gpus": []})
    assert not any("nvidia-driver" in c or "ubuntu-drivers" in c or c.startswith("verify") for c in steps)
    assert "install docker-ce, docker-ce-cli, containerd.io, docker-buildx-plugin, docker-compose-plugin" in steps


def test_the_ngc_key_never_appears_in_the_script():
    text = render_script(plan(V100))
    assert "nvapi-planted-secret" not in text
    assert "--password-stdin" in text and "'$oauthtoken'" in text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by scripts/setup.sh")
def test_the_whole_builder_script_passes_shellcheck(tmp_path):
    script = tmp_path / "builder.sh"
    script.write_text(render_script(plan(V100)))
    run = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
