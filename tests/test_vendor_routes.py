"""What the GPU roles install and check, per distribution, as the vendors ship it (no lab: compiled plans)."""
from __future__ import annotations

import pytest

from provision.compiler import plan_host
from provision.facts import EXAMPLE_FACTS
from provision.gpu.preflight import PreflightError
from provision.inventory import Host
from provision.roles import load_roles
from tests.helpers import PROJECT

BUILDER = ["base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer", "ngc_login", "verify"]
GPU = [{"slot": "0000:00:1e.0", "pci_id": "10de:1db1", "class": "0x030200"}]
NOBLE = {**EXAMPLE_FACTS, "os_version_id": "24.04", "os_codename": "noble", "gpus": GPU}
BOOKWORM = {**EXAMPLE_FACTS, "os_id": "debian", "os_version_id": "12", "os_codename": "bookworm", "gpus": GPU}


@pytest.fixture(autouse=True)
def ngc_key(monkeypatch):
    monkeypatch.setenv("NGC_TEST_KEY", "nvapi-planted-secret-0123456789")



def plan_steps(facts, **variables):
    roles = load_roles(PROJECT / "roles", BUILDER)
    host = Host("h", {"ngc_login_api_key": {"secret_env": "NGC_TEST_KEY"}, **variables}, [])
    return [p.step for p in plan_host(roles, host, {}, facts).steps]


def test_ubuntu_drivers_route_checks_prebuilt_modules_first_and_installs_no_dkms_or_xorg():
    planned = plan_steps(NOBLE)
    changes = [s.change for s in planned]
    check = next(i for i, s in enumerate(planned) if "no prebuilt NVIDIA modules" in s.apply)
    assert check < changes.index("install ubuntu-drivers-common"), "refused before anything of the driver is installed"
    assert "linux-modules-nvidia-" in planned[check].check and "$(uname -r)" in planned[check].check
    assert not any("linux-headers" in c for c in changes), "no DKMS on this route: no headers"
    assert "install nvidia-headless-no-dkms-580-server, nvidia-utils-580-server and hold them" in changes
    assert not any("nvidia-driver-580-server" in c or "dkms-580" in c.replace("no-dkms", "") for c in changes)
    ubuntu_drivers = next(s for s in planned if s.change.startswith("run ubuntu-drivers install --gpgpu nvidia:580-server"))
    assert "nvidia-headless-no-dkms-580-server" in ubuntu_drivers.check and "$(uname -r)" in ubuntu_drivers.check


@pytest.mark.parametrize("route, package", [("ubuntu-drivers", "nvidia-utils-580-server"), ("cuda-repo", "cuda-drivers")])
def test_the_reboot_point_compares_the_loaded_driver_with_the_installed_one(route, package):
    reboot = next(s for s in plan_steps(NOBLE, nvidia_driver_route=route) if s.control == "reboot")
    assert "/proc/driver/nvidia/version" in reboot.check and "nouveau" in reboot.check
    assert package in reboot.check and "reboot-required" not in reboot.check


def test_apparmor_profile_is_checked_by_its_userns_rule_on_noble():
    profile = next(s for s in plan_steps(NOBLE, apptainer_source="deb") if "apparmor" in s.apply)
    assert "userns," in profile.check and "/etc/apparmor.d/apptainer" in profile.check


def test_debian_gets_the_vendors_debian_urls():
    planned = plan_steps(BOOKWORM, nvidia_driver_route="cuda-repo", apptainer_source="deb")
    text = "\n".join(s.apply + s.check for s in planned)
    assert "https://download.docker.com/linux/debian" in text and "download.docker.com/linux/ubuntu" not in text
    assert "/compute/cuda/repos/debian12/x86_64" in text
    assert "ubuntu-drivers" not in text and "ppa.launchpadcontent.net" not in text


def test_debian_refuses_ubuntu_drivers_and_the_ppa_saying_what_to_use():
    with pytest.raises(PreflightError, match="ubuntu-drivers cannot work on Debian 12.*set nvidia_driver_route: cuda-repo"):
        plan_steps(BOOKWORM)
    with pytest.raises(PreflightError, match="ppa cannot work on Debian 12.*set apptainer_source: deb"):
        plan_steps(BOOKWORM, nvidia_driver_route="cuda-repo")
