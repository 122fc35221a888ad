"""Preflight honours what a host asks for when it can work, and refuses Ubuntu-only sources elsewhere."""
from __future__ import annotations

import re

import pytest

from provision.gpu.compat import table
from provision.gpu.preflight import PreflightError, decide

T4 = "10de:1eb8"


def host(os_id: str = "ubuntu", version: str = "22.04", arch: str = "amd64", **extra) -> dict:
    """Facts of a host with one T4."""
    gpus = [{"slot": "0000:00:1e.0", "pci_id": T4, "class": "0x030200"}]
    return {"gpus": gpus, "os_id": os_id, "os_version_id": version, "arch": arch, **extra}


@pytest.mark.parametrize("secure_boot, why", [("disabled", "Secure Boot is disabled"), (None, "Secure Boot state unknown")])
def test_a_requested_cuda_repo_route_is_the_route_taken(secure_boot, why):
    facts = host(**({"secure_boot": secure_boot} if secure_boot else {}))
    route = decide(facts, {"nvidia_driver_route": "cuda-repo"}).driver_route
    assert route.value == "cuda-repo" and why in route.reason


def test_a_requested_ubuntu_drivers_route_is_the_route_taken():
    route = decide(host(secure_boot="enabled"), {"nvidia_driver_route": "ubuntu-drivers"}).driver_route
    assert (route.value, route.reason) == ("ubuntu-drivers", "requested: signed prebuilt modules from the Ubuntu archive")


@pytest.mark.parametrize("flavour, package_suffix", [("proprietary", "-server"), ("open", "-server-open")])
def test_a_requested_flavour_is_the_driver_installed(flavour, package_suffix):
    decision = decide(host(secure_boot="disabled"), {"nvidia_driver_flavour": flavour})
    assert decision.driver_flavour.value == flavour
    assert decision.ubuntu_driver.endswith(package_suffix)


def test_on_debian_ubuntu_drivers_is_refused_and_the_cuda_repository_works():
    with pytest.raises(PreflightError, match=r"^nvidia_driver_route ubuntu-drivers cannot work on Debian 12: .*"
                                             r"set nvidia_driver_route: cuda-repo \(NVIDIA's debian12 repository\)"):
        decide(host("debian", "12", secure_boot="disabled"), {})
    decision = decide(host("debian", "12", secure_boot="disabled"), {"nvidia_driver_route": "cuda-repo"})
    assert decision.driver_route.value == "cuda-repo"


def test_apptainers_ppa_is_refused_off_ubuntu_and_its_deb_off_amd64():
    debian = host("debian", "12", secure_boot="disabled")
    with pytest.raises(PreflightError, match=r"^apptainer_source ppa cannot work on Debian 12"):
        decide(debian, {"nvidia_driver_route": "cuda-repo", "apptainer_source": "ppa"})
    assert decide(debian, {"nvidia_driver_route": "cuda-repo", "apptainer_source": "deb"}).driver_route.value == "cuda-repo"
    assert decide(host(secure_boot="disabled"), {"apptainer_source": "deb"}).driver_route.value == "ubuntu-drivers"
    with pytest.raises(PreflightError, match=r"apptainer_source deb cannot work on an arm64 host: .*; set apptainer_source: ppa$"):
        decide({"os_id": "ubuntu", "os_version_id": "22.04", "arch": "arm64", "gpus": []}, {"apptainer_source": "deb"})


def test_the_oldest_branch_the_stack_allows_may_be_requested_and_one_older_may_not():
    compat = table()
    oldest = compat.min_branch_for_cuda(compat.minimum_cuda)
    request = {"nvidia_driver_route": "cuda-repo", "nvidia_driver_branch": oldest}
    assert decide(host(secure_boot="disabled"), request).driver_branch.value == str(oldest)
    with pytest.raises(PreflightError, match=rf"nvidia_driver_branch {oldest - 1} is too old for this stack"):
        decide(host(secure_boot="disabled"), {**request, "nvidia_driver_branch": oldest - 1})


def test_a_host_without_a_gpu_gets_no_driver_and_the_ngc_tag_it_asks_for():
    facts = {"gpus": [], "os_id": "ubuntu", "os_version_id": "22.04", "arch": "amd64"}
    decision = decide(facts, {})
    settings = (decision.driver_route, decision.driver_branch, decision.driver_flavour, decision.cuda_ceiling)
    assert decision.gpus == () and [s.value for s in settings] == [None] * 4
    assert re.fullmatch(r"\d\d\.\d\d", decision.ngc_pytorch_tag.value)  # the newest tag gpu_compat.yml knows
    assert decide(facts, {"ngc_pytorch_tag": "24.01"}).ngc_pytorch_tag.value == "24.01"
    assert decide({**facts, "os_id": "debian", "os_version_id": "12"}, {}).cuda_repo_key == "3bf863cc.pub"


def test_the_gpus_found_are_reported_by_slot_and_pci_id():
    found = decide(host(secure_boot="disabled"), {}).gpus
    assert [(gpu.slot, gpu.pci_id) for gpu in found] == [("0000:00:1e.0", T4)]
