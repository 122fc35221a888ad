"""User-data for today's GPU instances: B300, GH200 (arm64), RTX PRO 6000 and a mixed T4 + A100 host."""
from __future__ import annotations

import gzip
from email import message_from_bytes

import pytest

from provision.inventory import Host
from provision.roles import load_roles
from provision.userdata import EC2_LIMIT, build_userdata
from tests.helpers import PROJECT

BUILDER = ["base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer", "ngc_login",
           "verify"]
SSM = {"ngc_login_api_key": {"secret_ssm": "/ngc/api-key"}}


def render(declared: dict, **variables) -> tuple[str, int]:
    """The user-data's shell part and the size of its gzip'd MIME form."""
    host = Host("gpu-builder", {"declared_facts": declared, **variables}, [])
    roles = load_roles(PROJECT / "roles", BUILDER)
    mime = build_userdata(roles, host, SSM, "mime")
    message = message_from_bytes(gzip.decompress(mime.body))
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/x-shellscript"]
    return part.get_payload(decode=True).decode(), len(mime.body)


def ubuntu(version: str, codename: str, **extra) -> dict:
    return {"os_id": "ubuntu", "os_version_id": version, "os_codename": codename, **extra}


def test_b300_instance_gets_the_open_595_driver():
    text, size = render(ubuntu("24.04", "noble", instance_type="p6-b300.48xlarge"))
    assert "ubuntu-drivers install --gpgpu nvidia:595-server-open" in text
    assert "nvidia-driver-595-server-open" in text and "nvidia-driver-580-server " not in text
    assert "case \" $gpus\" in *0x3182*)" in text, "the boot-time check looks for the B300's PCI id"
    assert "'ubuntu 24.04 amd64'" in text
    assert size <= EC2_LIMIT


def test_b300_on_the_cuda_repository_route_pins_620_and_installs_nvidia_open():
    text, _ = render(ubuntu("24.04", "noble", instance_type="p6-b300.48xlarge"), nvidia_driver_route="cuda-repo")
    assert "nvidia-driver-pinning-620" in text and "nvidia-open" in text and "cuda-drivers" not in text
    assert "developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64/3bf863cc.pub" in text


def test_gh200_is_arm64_with_sbsa_repositories_and_open_modules():
    text, size = render(ubuntu("24.04", "noble", arch="arm64", gpus=[
        {"slot": None, "pci_id": "10de:2342", "class": "0x030200"}]), nvidia_driver_route="cuda-repo")
    assert "'ubuntu 24.04 arm64'" in text, "the boot-time check expects an arm64 instance"
    assert "developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/sbsa" in text
    assert "nvidia-open" in text and "cuda-drivers" not in text
    assert "*0x2342*" in text
    assert size <= EC2_LIMIT


def test_gh200_declared_as_amd64_is_refused_before_any_user_data():
    from provision.gpu.preflight import PreflightError
    with pytest.raises(PreflightError, match="comes only with arm64 CPUs, but this host's architecture is amd64"):
        render(ubuntu("24.04", "noble", arch="amd64", gpus=[{"slot": None, "pci_id": "10de:2342", "class": "0x030200"}]))


def test_an_arm64_instance_type_makes_the_user_data_arm64():
    text, _ = render(ubuntu("24.04", "noble", instance_type="g5g.xlarge"))
    assert "'ubuntu 24.04 arm64'" in text and "*0x1eb4*" in text
    assert "ubuntu-drivers install --gpgpu nvidia:595-server-open" in text


def test_rtx_pro_6000_instance_on_ubuntu_26_04():
    text, size = render(ubuntu("26.04", "resolute", instance_type="g7e.2xlarge"))
    assert "ubuntu-drivers install --gpgpu nvidia:595-server-open" in text
    assert "*0x2bb5*" in text and "'ubuntu 26.04 amd64'" in text
    assert size <= EC2_LIMIT


def test_rtx_pro_6000_on_26_04_cuda_repository_uses_the_new_key():
    text, _ = render(ubuntu("26.04", "resolute", instance_type="g7e.2xlarge"), nvidia_driver_route="cuda-repo")
    assert "developer.download.nvidia.com/compute/cuda/repos/ubuntu2604/x86_64/60DF8A40.pub" in text
    assert "3bf863cc" not in text


def test_mixed_t4_and_a100_host_gets_the_open_modules():
    gpus = [{"slot": None, "pci_id": "10de:1eb8", "class": "0x030200"},
            {"slot": None, "pci_id": "10de:20b0", "class": "0x030200"}]
    text, size = render(ubuntu("22.04", "jammy", arch="amd64", gpus=gpus))
    assert "ubuntu-drivers install --gpgpu nvidia:595-server-open" in text
    assert "nvidia:595-server " not in text and "nvidia:595-server'" not in text
    assert size <= EC2_LIMIT
