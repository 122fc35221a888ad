"""Preflight for the GPUs, branches, CUDA releases and NGC tags of late 2026 (gpu_compat.yml), exact messages."""
from __future__ import annotations

import pytest

from provision.gpu import compat
from provision.gpu.images import check_image_for_gpus
from provision.gpu.preflight import PreflightError, decide

B300, GB300, GH200, GB10, RTX6000 = "10de:3182", "10de:31c2", "10de:2342", "10de:2e12", "10de:2bb5"
V100, T4, A100, M60, K40, H100, H200NVL = "10de:1db1", "10de:1eb8", "10de:20b0", "10de:13f2", "10de:1023", "10de:2330", "10de:233b"
KEYS = ("nvidia_driver_route", "nvidia_driver_branch", "nvidia_driver_flavour", "cuda_version", "ngc_pytorch_tag")
NEWEST_595 = "595 is the newest production branch in Ubuntu {}'s archive (end of life 2027-03)"


def host(*pci_ids: str, release: str = "22.04", arch: str = "amd64", **extra) -> dict:
    gpus = [{"slot": f"0000:00:{0x1e - i:02x}.0", "pci_id": pci_id, "class": "0x030200"}
            for i, pci_id in enumerate(pci_ids)]
    return {"gpus": gpus, "secure_boot": "disabled", "os_id": "ubuntu", "os_version_id": release, "arch": arch, **extra}


def request(**chosen) -> dict:
    return {key: chosen.get(key) for key in KEYS}


def refusal(facts: dict, req: dict) -> str:
    with pytest.raises(PreflightError) as caught:
        decide(facts, req)
    return str(caught.value)


# -- new GPUs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pci_id, arch, summary, flavour_reason", [
    (B300, "amd64", "1x NVIDIA B300 SXM6 AC (Blackwell, sm_103)", "Blackwell requires the open kernel modules"),
    (GB300, "arm64", "1x NVIDIA GB300 (Blackwell, sm_103)", "Blackwell requires the open kernel modules"),
    (GH200, "arm64", "1x NVIDIA GH200 480GB (Hopper, sm_90)",
     "NVIDIA GH200 480GB (a Grace part) requires the open kernel modules"),
    ("10de:2941", "arm64", "1x NVIDIA GB200 (Blackwell, sm_100)", "Blackwell requires the open kernel modules"),
    (GB10, "arm64", "1x NVIDIA GB10 (Blackwell, sm_121)", "Blackwell requires the open kernel modules"),
    (RTX6000, "amd64", "1x NVIDIA RTX PRO 6000 Blackwell Server Edition (Blackwell, sm_120)",
     "Blackwell requires the open kernel modules"),
    ("10de:2bb1", "amd64", "1x NVIDIA RTX PRO 6000 Blackwell Workstation Edition (Blackwell, sm_120)",
     "Blackwell requires the open kernel modules"),
    ("10de:2bb4", "amd64", "1x NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition (Blackwell, sm_120)",
     "Blackwell requires the open kernel modules"),
    ("10de:2c3a", "amd64", "1x NVIDIA RTX PRO 4500 Blackwell Server Edition (Blackwell, sm_120)",
     "Blackwell requires the open kernel modules"),
    (H200NVL, "amd64", "1x NVIDIA H200 NVL (Hopper, sm_90)",
     "Hopper supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:26b5", "amd64", "1x NVIDIA L40 (Ada, sm_89)", "Ada supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:2236", "amd64", "1x NVIDIA A10 (Ampere, sm_86)",
     "Ampere supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:2331", "amd64", "1x NVIDIA H100 PCIe (Hopper, sm_90)",
     "Hopper supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:2321", "amd64", "1x NVIDIA H100 NVL (Hopper, sm_90)",
     "Hopper supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:2329", "amd64", "1x NVIDIA H20 (Hopper, sm_90)",
     "Hopper supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:20f3", "amd64", "1x NVIDIA A800-SXM4-80GB (Ampere, sm_80)",
     "Ampere supports the open kernel modules, NVIDIA's recommendation from Turing on"),
    ("10de:1eb4", "arm64", "1x NVIDIA T4G (Turing, sm_75)",
     "Turing supports the open kernel modules, NVIDIA's recommendation from Turing on"),
])
def test_new_gpus_get_open_modules_on_the_newest_production_branch(pci_id, arch, summary, flavour_reason):
    decision = decide(host(pci_id, arch=arch), request())
    assert decision.gpu_summary == summary
    assert (decision.driver_branch.value, decision.driver_flavour.value) == ("595", "open")
    assert decision.driver_flavour.reason == flavour_reason
    assert decision.ubuntu_driver == "595-server-open"
    assert (decision.cuda_ceiling.value, decision.ngc_pytorch_tag.value) == ("13.5", "26.06")


def test_k40_is_refused_like_every_kepler():
    assert refusal(host(K40), request()) == (
        "Tesla K40m (Kepler, sm_35) cannot run this stack: Kepler support ends with driver branch 470 and CUDA 11.8, "
        "and this stack needs CUDA 12.0 or newer; keep this host on nvidia_driver_branch 470 with CUDA 11.x images "
        "outside this tool, or use a newer GPU")


# -- minimum driver per GPU, not per architecture -------------------------------------------------------

@pytest.mark.parametrize("pci_id, arch, branch, message", [
    (B300, "amd64", "570", "nvidia_driver_branch 570 cannot drive NVIDIA B300 SXM6 AC (Blackwell, sm_103): it needs "
                           "driver 580.82.07 or newer (branch 580); use nvidia_driver_branch: 595"),
    (GB300, "arm64", "575", "nvidia_driver_branch 575 cannot drive NVIDIA GB300 (Blackwell, sm_103): it needs "
                            "driver 580.82.07 or newer (branch 580); use nvidia_driver_branch: 595"),
    (GB10, "arm64", "580", "nvidia_driver_branch 580 cannot drive NVIDIA GB10 (Blackwell, sm_121): it needs "
                           "driver 590.48.01 or newer (branch 590); use nvidia_driver_branch: 595"),
    (RTX6000, "amd64", "570", "nvidia_driver_branch 570 cannot drive NVIDIA RTX PRO 6000 Blackwell Server Edition "
                              "(Blackwell, sm_120): it needs driver 575.51.03 or newer (branch 575); "
                              "use nvidia_driver_branch: 595"),
])
def test_refuses_a_branch_older_than_the_gpus_own_first_driver(pci_id, arch, branch, message):
    assert refusal(host(pci_id, arch=arch), request(nvidia_driver_branch=branch)) == message


def test_b300_accepts_branch_580_the_first_that_drives_it():
    decision = decide(host(B300), request(nvidia_driver_branch="580"))
    assert (decision.driver_branch.value, decision.cuda_ceiling.value) == ("580", "13.5")


def test_refuses_gb10_beside_a_v100_naming_both_limits():
    assert refusal(host(GB10, V100, arch="arm64"), request()) == (
        "no driver branch can drive both NVIDIA GB10 (Blackwell, sm_121) and Tesla V100-SXM2-16GB (Volta, sm_70): "
        "it needs driver 590.48.01 or newer (branch 590), and Volta support ends with branch 580; "
        "put these GPUs on separate hosts")


# -- Grace parts and CPU architecture -----------------------------------------------------------------

def test_refuses_proprietary_modules_on_grace_hopper():
    assert refusal(host(GH200, arch="arm64"), request(nvidia_driver_flavour="proprietary")) == (
        "nvidia_driver_flavour proprietary cannot drive NVIDIA GH200 480GB (Hopper, sm_90): NVIDIA GH200 480GB "
        "(a Grace part) requires the open kernel modules; use nvidia_driver_flavour: open")


def test_plain_hopper_still_allows_the_proprietary_modules():
    assert decide(host(H100), request(nvidia_driver_flavour="proprietary")).driver_flavour.value == "proprietary"


def test_refuses_a_grace_gpu_on_an_amd64_host():
    assert refusal(host(GH200), request()) == (
        "NVIDIA GH200 480GB (Hopper, sm_90) comes only with arm64 CPUs, but this host's architecture is amd64; "
        "check the facts (user-data: declared_facts arch: arm64)")


# -- branches --------------------------------------------------------------------------------------------

def test_cuda_repo_route_takes_620_the_new_long_term_branch():
    decision = decide(host(T4), request(nvidia_driver_route="cuda-repo"))
    assert decision.driver_branch.value == "620"
    assert decision.driver_branch.reason == ("Turing supported by current branches; 620 is the newest long-term "
                                             "branch (end of life 2029-09)")


def test_ubuntu_drivers_route_takes_only_a_branch_in_the_release_archive():
    assert refusal(host(T4), request(nvidia_driver_branch="620")) == (
        "nvidia_driver_branch 620 is not in Ubuntu 22.04's archive (ubuntu-drivers offers 535-server, 570-server, "
        "580-server, 595-server); use nvidia_driver_branch: 595, or nvidia_driver_route: cuda-repo")


def test_from_branch_615_only_the_open_flavour_exists():
    assert refusal(host(T4, release="26.04"), request(nvidia_driver_branch="615", nvidia_driver_flavour="proprietary")) == (
        "nvidia_driver_flavour proprietary does not exist for branch 615: from branch 615 only the open kernel "
        "modules are shipped (Ubuntu's nvidia-dkms-615-server is a transitional package); "
        "use nvidia_driver_flavour: open")
    assert refusal(host(T4), request(nvidia_driver_route="cuda-repo", nvidia_driver_branch="620",
                                     nvidia_driver_flavour="proprietary")).startswith(
        "nvidia_driver_flavour proprietary does not exist for branch 620")
    assert decide(host(T4, release="26.04"), request(nvidia_driver_branch="615")).ubuntu_driver == "615-server-open"


def test_a_branch_past_its_end_of_life_is_kept_with_a_warning():
    decision = decide(host(T4, release="26.04"), request(nvidia_driver_branch="610"))
    assert (decision.driver_branch.value, decision.ubuntu_driver) == ("610", "610-open")
    assert decision.warnings == ("driver branch 610 reached its end of life in 2026-08: it gets no more fixes; "
                                 "595 is supported",)


def test_ubuntu_26_04_uses_its_own_archive_and_the_new_cuda_repository_key():
    decision = decide(host(T4, release="26.04"), request())
    assert decision.driver_branch.reason == f"Turing supported by current branches; {NEWEST_595.format('26.04')}"
    assert decision.cuda_repo_key == "60DF8A40.pub"
    assert decide(host(T4, release="24.04"), request()).cuda_repo_key == "3bf863cc.pub"


def test_the_branch_table_holds_580_to_620_with_their_end_of_life():
    branches = compat.table().branches
    assert {b: (r.designation, r.end_of_life, r.open_only) for b, r in branches.items() if b >= 580} == {
        580: ("long-term", "2028-06", False), 590: ("new-feature", None, False), 595: ("production", "2027-03", False),
        610: ("new-feature", "2026-08", False), 615: ("new-feature", None, True), 620: ("long-term", "2029-09", True)}


# -- corrected rules ------------------------------------------------------------------------------------

def test_mixed_t4_and_a100_take_open_modules_and_volta_beside_them_takes_proprietary():
    assert decide(host(T4, A100), request()).driver_flavour.value == "open"
    mixed = decide(host(T4, A100, V100), request())
    assert (mixed.driver_flavour.value, mixed.driver_flavour.reason) == (
        "proprietary", "Volta has no open kernel module support (mixed host: Turing, Ampere, Volta)")


def test_m60_gets_a_driver_but_no_ngc_tag():
    decision = decide(host(M60), request())
    assert (decision.driver_branch.value, decision.driver_flavour.value) == ("580", "proprietary")
    assert decision.ngc_pytorch_tag.value is None
    assert decision.ngc_pytorch_tag.reason == ("no NGC PyTorch tag: NGC framework images need compute capability "
                                               "6.0 or later, and Tesla M60 (Maxwell, sm_52) is 5.2")
    assert refusal(host(M60), request(ngc_pytorch_tag="24.01")) == (
        "ngc_pytorch_tag 24.01 cannot run on Tesla M60 (Maxwell, sm_52): NGC framework images need compute "
        "capability 6.0 or later, and Tesla M60 (Maxwell, sm_52) is 5.2; use a CUDA 12.9 base image (nvidia/cuda) "
        "with a PyTorch build that still targets sm_52")


def test_p100_keeps_its_ngc_tag():
    assert decide(host("10de:15f8"), request()).ngc_pytorch_tag.value == "25.06"


def test_refuses_an_ngc_base_image_for_maxwell():
    with pytest.raises(PreflightError) as caught:
        check_image_for_gpus("nvcr.io/nvidia/pytorch:24.01-py3", ["maxwell"])
    assert str(caught.value) == (
        "base image nvcr.io/nvidia/pytorch:24.01-py3 cannot run on Maxwell GPUs: NGC framework images need compute "
        "capability 6.0 or later; use a CUDA 12.9 base image")


# -- a GPU missing from the table on a host with a driver -----------------------------------------

def test_an_unknown_gpu_is_taken_by_the_compute_capability_nvidia_smi_reports_with_a_warning():
    decision = decide(host("10de:ffff", gpu_caps={"00:1e.0": "10.0"}), request())
    assert decision.gpu_summary == "1x NVIDIA GPU 10de:ffff (Blackwell, sm_100)"
    assert decision.driver_flavour.value == "open"
    assert decision.warnings == (
        "GPU 10de:ffff at 0000:00:1e.0 is not in gpu_compat.yml; nvidia-smi reports compute capability 10.0, so "
        "preflight takes it as Blackwell: add a row to section 'gpus' {pci_id: \"10de:ffff\", model: \"<name "
        "nvidia-smi prints>\", architecture: blackwell, compute_capability: \"10.0\", source: \"<NVIDIA's list of "
        "supported GPUs>\"}",)


def test_an_unknown_gpu_with_an_unknown_compute_capability_is_refused():
    assert refusal(host("10de:ffff", gpu_caps={"00:1e.0": "14.0"}), request()) == (
        "GPU 10de:ffff at 0000:00:1e.0 is not in gpu_compat.yml, and the compute capability nvidia-smi reports, "
        "14.0, is in no row of section 'architectures'; add both rows")


# -- CUDA releases and NGC tags -------------------------------------------------------------------

@pytest.mark.parametrize("cuda, driver", [("13.3", "610.43.02"), ("13.4", None), ("13.5", "620.70.06"),
                                          ("12.8", "570.86.10")])
def test_cuda_releases_to_13_5(cuda, driver):
    assert compat.bundled_driver(cuda) == driver
    assert compat.min_branch_for_cuda(cuda) == (580 if cuda.startswith("13") else 525)


@pytest.mark.parametrize("cuda", ["13.3", "13.4", "13.5"])
def test_cuda_13_x_needs_branch_580(cuda):
    assert refusal(host(T4), request(nvidia_driver_branch="570", cuda_version=cuda)) == (
        f"cuda_version {cuda} needs driver branch 580 or newer, but the driver branch is 570; "
        f"use nvidia_driver_branch: 580, or cuda_version: 12.9")
    assert refusal(host(V100), request(cuda_version=cuda)) == (
        f"cuda_version {cuda} cannot target Tesla V100-SXM2-16GB (Volta, sm_70): CUDA 12.9 is the last toolkit "
        f"for Volta; use cuda_version: 12.9")


@pytest.mark.parametrize("tag, cuda", [("20.03", "10.2"), ("22.12", "11.8"), ("23.12", "12.3"), ("25.12", "13.1"),
                                       ("26.03", "13.2"), ("26.05", "13.2"), ("26.06", "13.3")])
def test_ngc_tags_from_20_03_to_26_06(tag, cuda):
    assert compat.ngc_pytorch_cuda(f"{tag}-py3") == cuda


@pytest.mark.parametrize("tag, cuda", [("25.12", "13.1"), ("26.03", "13.2"), ("26.06", "13.3")])
def test_new_ngc_tags_are_refused_on_a_v100_with_the_tag_that_works(tag, cuda):
    assert refusal(host(V100), request(ngc_pytorch_tag=tag)) == (
        f"ngc_pytorch_tag {tag} cannot run on Tesla V100-SXM2-16GB (Volta, sm_70): it is built on CUDA {cuda}, "
        f"and CUDA 12.9 is the last toolkit for Volta; 25.06 is the newest NGC PyTorch that runs there; "
        f"use ngc_pytorch_tag: 25.06")


def test_new_ngc_tag_runs_on_h100():
    assert decide(host(H100), request(ngc_pytorch_tag="26.06")).ngc_pytorch_tag.reason == "requested; built on CUDA 13.3"


# -- EC2 families ------------------------------------------------------------------------------------

@pytest.mark.parametrize("instance, model, count, arch", [
    ("p5.4xlarge", "NVIDIA H100 80GB HBM3", 1, "amd64"), ("p5e.48xlarge", "NVIDIA H200", 8, "amd64"),
    ("p5en.48xlarge", "NVIDIA H200", 8, "amd64"), ("p6-b200.48xlarge", "NVIDIA B200", 8, "amd64"),
    ("p6-b300.48xlarge", "NVIDIA B300 SXM6 AC", 8, "amd64"), ("p6e-gb200.36xlarge", "NVIDIA GB200", 4, "arm64"),
    ("g5g.xlarge", "NVIDIA T4G", 1, "arm64"), ("g6e.xlarge", "NVIDIA L40S", 1, "amd64"),
    ("g7e.2xlarge", "NVIDIA RTX PRO 6000 Blackwell Server Edition", 1, "amd64"),
    ("g7.8xlarge", "NVIDIA RTX PRO 4500 Blackwell Server Edition", 1, "amd64"),
])
def test_ec2_families_in_use_now(instance, model, count, arch):
    row = compat.instance_gpus(instance)
    assert (row.gpu.model, row.count, row.arch) == (model, count, arch)


def test_an_arm64_host_is_refused_apptainers_amd64_only_release_deb_and_told_to_take_the_ppa():
    assert refusal(host(GH200, arch="arm64"), {**request(), "apptainer_source": "deb"}) == (
        "apptainer_source deb cannot work on an arm64 host: Apptainer's release .deb is built for amd64 only; "
        "set apptainer_source: ppa")
    assert decide(host(GH200, arch="arm64"), {**request(), "apptainer_source": "ppa"}).driver_flavour.value == "open"
