"""Preflight: facts and role variables in, a decision or a refusal that says what to choose instead."""
from __future__ import annotations

import textwrap

import pytest
from rich.console import Console

from provision.errors import ProvisionError
from provision.gpu import compat
from provision.gpu.compat import CompatTableError, load_table
from provision.gpu.images import check_image_for_gpus
from provision.gpu.preflight import PreflightError, decide
from provision.gpu.report import format_decision
from tests.helpers import PROJECT

V100, T4, A100, K80, B200 = "10de:1db1", "10de:1eb8", "10de:20b0", "10de:102d", "10de:2901"
CURRENT = "595"  # newest long-term or production branch in Ubuntu 22.04's archive (gpu_compat.yml)


def host(*pci_ids: str, secure_boot: str = "disabled", **extra) -> dict:
    gpus = [{"slot": f"0000:00:{0x1e - i:02x}.0", "pci_id": pci_id, "class": "0x030200"}
            for i, pci_id in enumerate(pci_ids)]
    return {"gpus": gpus, "secure_boot": secure_boot, "kernel": "6.8.0-1015-aws", "os_id": "ubuntu",
            "os_version_id": "22.04", "arch": "amd64", **extra}


def request(**chosen) -> dict:
    keys = ("nvidia_driver_route", "nvidia_driver_branch", "nvidia_driver_flavour", "cuda_version", "ngc_pytorch_tag")
    return {key: chosen.get(key) for key in keys}


def refusal(facts: dict, req: dict) -> str:
    with pytest.raises(PreflightError) as caught:
        decide(facts, req)
    return str(caught.value)


# -- what preflight chooses -----------------------------------------------------------------------

def test_v100_gets_proprietary_580_cuda_12_9_and_ngc_25_06():
    decision = decide(host(V100), request())
    assert decision.gpu_summary == "1x Tesla V100-SXM2-16GB (Volta, sm_70)"
    assert decision.driver_route.value == "ubuntu-drivers"
    assert decision.driver_branch.value == "580"
    assert decision.driver_branch.reason == "Volta support ends with branch 580"
    assert decision.driver_flavour.value == "proprietary"
    assert decision.driver_flavour.reason == "Volta has no open kernel module support"
    assert decision.cuda_ceiling.value == "12.9"
    assert decision.cuda_ceiling.reason == "CUDA 12.9 is the last toolkit that can target sm_70 (Volta)"
    assert decision.ngc_pytorch_tag.value == "25.06"


def test_t4_gets_open_modules_on_the_current_branch():
    decision = decide(host(T4), request())
    assert decision.gpus[0].architecture == "Turing" and decision.gpus[0].compute_capability == "7.5"
    assert decision.driver_flavour.value == "open"
    assert decision.driver_branch.value == CURRENT
    assert decision.driver_branch.reason == ("Turing supported by current branches; 595 is the newest production "
                                             "branch in Ubuntu 22.04's archive (end of life 2027-03)")
    assert decision.cuda_ceiling.value.startswith("13.")


def test_eight_a100s_get_open_modules_and_cuda_13():
    decision = decide(host(*[A100] * 8), request())
    assert decision.gpu_summary == "8x NVIDIA A100-SXM4-40GB (Ampere, sm_80)"
    assert (decision.driver_flavour.value, decision.driver_branch.value) == ("open", CURRENT)
    assert decision.cuda_ceiling.value.startswith("13.")
    assert decision.ngc_pytorch_tag.value >= "25.08"


def test_mixed_v100_and_t4_host_gets_proprietary_modules_and_the_volta_limits():
    decision = decide(host(V100, T4), request())
    assert decision.driver_flavour.value == "proprietary"
    assert decision.driver_flavour.reason == "Volta has no open kernel module support (mixed host: Volta, Turing)"
    assert (decision.driver_branch.value, decision.cuda_ceiling.value) == ("580", "12.9")
    assert decision.ngc_pytorch_tag.value == "25.06"


def test_mixed_turing_and_ampere_host_gets_open_modules_since_no_gpu_is_pre_turing():
    decision = decide(host(T4, A100), request())
    assert decision.driver_flavour.value == "open"
    assert decision.driver_flavour.reason == ("mixed host (Turing, Ampere) with no pre-Turing GPU: the open kernel "
                                              "modules, NVIDIA's recommendation from Turing on")
    assert decision.ubuntu_driver == "595-server-open"


def test_p3_2xlarge_instance_type_means_one_v100_without_gpu_facts():
    facts = host(instance_type="p3.2xlarge")
    decision = decide(facts, request())
    assert decision.gpu_summary == "1x Tesla V100-SXM2-16GB (Volta, sm_70)"
    assert decision.gpu_reason == "instance type p3.2xlarge has 1x Tesla V100-SXM2-16GB"
    assert decision.gpus[0].slot is None
    assert (decision.driver_branch.value, decision.driver_flavour.value) == ("580", "proprietary")


def test_blackwell_gets_open_modules_because_they_are_required():
    decision = decide(host(B200), request())
    assert decision.driver_flavour.value == "open"
    assert decision.driver_flavour.reason == "Blackwell requires the open kernel modules"


def test_requested_values_that_fit_are_kept_with_their_reason():
    decision = decide(host(V100), request(nvidia_driver_branch="580", cuda_version="12.6",
                                          ngc_pytorch_tag="25.03-py3", nvidia_driver_route="cuda-repo"))
    assert decision.driver_branch.reason == "requested; Volta support ends with branch 580"
    assert decision.cuda_ceiling.reason.endswith("requested cuda_version 12.6 fits")
    assert decision.ngc_pytorch_tag.value == "25.03"
    assert decision.driver_route.reason == "requested; Secure Boot is disabled, so DKMS-built modules load"


def test_no_gpu_is_a_decision_that_says_so():
    decision = decide(host(), request())
    assert not decision.needs_driver
    assert decision.gpu_reason == "no NVIDIA GPU on the PCI bus (no vendor 10de display-class device)"
    assert decision.driver_branch.value is None
    assert decision.driver_branch.reason == "no NVIDIA GPU: no driver to install"


def test_nvidia_devices_that_are_not_gpus_are_ignored():
    facts = host(V100)
    facts["gpus"].append({"slot": "0000:00:1f.0", "pci_id": "10de:22a3", "class": "0x068000"})
    assert decide(facts, request()).gpu_summary == "1x Tesla V100-SXM2-16GB (Volta, sm_70)"


# -- what preflight refuses, and the fix it names -------------------------------------------------

def test_refuses_branch_590_on_volta():
    assert refusal(host(V100), request(nvidia_driver_branch="590")) == (
        "nvidia_driver_branch 590 cannot drive Tesla V100-SXM2-16GB (Volta, sm_70): "
        "Volta support ends with branch 580; use nvidia_driver_branch: 580")


def test_refuses_open_modules_on_volta():
    assert refusal(host(V100), request(nvidia_driver_flavour="open")) == (
        "nvidia_driver_flavour open cannot drive Tesla V100-SXM2-16GB (Volta, sm_70): "
        "the open kernel modules need Turing or newer; use nvidia_driver_flavour: proprietary")


def test_refuses_open_modules_on_a_mixed_host_naming_the_pre_turing_gpu():
    assert refusal(host(T4, V100), request(nvidia_driver_flavour="open")) == (
        "nvidia_driver_flavour open cannot drive Tesla V100-SXM2-16GB (Volta, sm_70): "
        "the open kernel modules need Turing or newer; use nvidia_driver_flavour: proprietary")


def test_refuses_cuda_13_on_v100():
    assert refusal(host(V100), request(cuda_version="13.0")) == (
        "cuda_version 13.0 cannot target Tesla V100-SXM2-16GB (Volta, sm_70): "
        "CUDA 12.9 is the last toolkit for Volta; use cuda_version: 12.9")


def test_refuses_ngc_pytorch_25_08_on_v100_naming_25_06():
    assert refusal(host(V100), request(ngc_pytorch_tag="25.08")) == (
        "ngc_pytorch_tag 25.08 cannot run on Tesla V100-SXM2-16GB (Volta, sm_70): it is built on CUDA 13.0, "
        "and CUDA 12.9 is the last toolkit for Volta; 25.06 is the newest NGC PyTorch that runs there; "
        "use ngc_pytorch_tag: 25.06")


def test_refuses_the_dkms_route_under_secure_boot():
    assert refusal(host(T4, secure_boot="enabled"), request(nvidia_driver_route="cuda-repo")) == (
        "nvidia_driver_route cuda-repo cannot work with Secure Boot enabled: its DKMS-built kernel modules "
        "are not signed by a key the kernel trusts and would be rejected; use nvidia_driver_route: ubuntu-drivers")


def test_refuses_a_cuda_version_that_needs_a_newer_branch():
    assert refusal(host(T4), request(nvidia_driver_branch="570", cuda_version="13.0")) == (
        "cuda_version 13.0 needs driver branch 580 or newer, but the driver branch is 570; "
        "use nvidia_driver_branch: 580, or cuda_version: 12.9")


def test_refuses_an_ngc_tag_that_needs_a_newer_branch():
    assert refusal(host(T4), request(nvidia_driver_branch="570", ngc_pytorch_tag="25.08")) == (
        "ngc_pytorch_tag 25.08 is built on CUDA 13.0, which needs driver branch 580 or newer, but the driver "
        "branch is 570; use nvidia_driver_branch: 580, or ngc_pytorch_tag: 25.06")


def test_refuses_kepler_for_a_modern_stack_with_the_fix():
    assert refusal(host(K80), request()) == (
        "Tesla K80 (Kepler, sm_37) cannot run this stack: Kepler support ends with driver branch 470 and "
        "CUDA 11.8, and this stack needs CUDA 12.0 or newer; keep this host on nvidia_driver_branch 470 with "
        "CUDA 11.x images outside this tool, or use a newer GPU")


def test_refuses_proprietary_modules_on_blackwell():
    assert refusal(host(B200), request(nvidia_driver_flavour="proprietary")) == (
        "nvidia_driver_flavour proprietary cannot drive NVIDIA B200 (Blackwell, sm_100): "
        "Blackwell requires the open kernel modules; use nvidia_driver_flavour: open")


def test_refuses_blackwell_and_volta_on_one_host():
    assert refusal(host(B200, V100), request()) == (
        "no driver flavour can drive both NVIDIA B200 (Blackwell, sm_100) and Tesla V100-SXM2-16GB "
        "(Volta, sm_70): Blackwell requires the open kernel modules, which do not support Volta; "
        "put these GPUs on separate hosts")


def test_refuses_a_demanded_driver_when_there_is_no_gpu():
    assert refusal(host(), request(nvidia_driver_branch="580")) == (
        "nvidia_driver_branch 580 requested, but no NVIDIA GPU on the PCI bus (no vendor 10de display-class "
        "device); remove nvidia_driver_branch or check that the GPU is attached")


def test_refuses_a_gpu_missing_from_the_table_without_a_driver_and_says_how_to_add_it():
    assert refusal(host("10de:ffff"), request()) == (
        "GPU 10de:ffff at 0000:00:1e.0 is not in gpu_compat.yml, so preflight cannot tell its architecture; "
        "add a row to section 'gpus' (pci_id, model, architecture, compute_capability, source) from NVIDIA's "
        "list of supported GPUs, or install a driver first: preflight then takes the compute capability "
        "nvidia-smi reports")


def test_preflight_errors_are_provision_errors():
    assert issubclass(PreflightError, ProvisionError)


# -- image recipes ---------------------------------------------------------------------------------

def test_refuses_an_ngc_pytorch_base_too_new_for_volta_naming_the_newest_that_works():
    with pytest.raises(PreflightError) as caught:
        check_image_for_gpus("nvcr.io/nvidia/pytorch:25.08-py3", ["volta"])
    assert str(caught.value) == (
        "base image nvcr.io/nvidia/pytorch:25.08-py3 cannot run on Volta GPUs: NGC PyTorch 25.08 is built on "
        "CUDA 13.0, and CUDA 12.9 is the last toolkit for Volta; 25.06 is the newest NGC PyTorch that runs "
        "there; use nvcr.io/nvidia/pytorch:25.06-py3")


def test_accepts_bases_that_run_and_bases_it_knows_nothing_about():
    check_image_for_gpus("nvcr.io/nvidia/pytorch:25.06-py3", ["Volta", "Turing"])
    check_image_for_gpus("ubuntu:24.04", ["volta"])


def test_refuses_a_cuda_13_base_for_volta():
    with pytest.raises(PreflightError, match="use a CUDA 12.9 base image"):
        check_image_for_gpus("nvidia/cuda:13.0.0-runtime-ubuntu24.04", ["volta"])


# -- the decision table ----------------------------------------------------------------------------

def test_decision_table_shows_each_setting_with_its_reason():
    console = Console(record=True, width=200)
    console.print(format_decision(decide(host(V100), request())))
    text = console.export_text()
    for setting, value, reason in [("Driver route", "ubuntu-drivers", "Secure Boot safe"),
                                   ("Driver branch", "580", "Volta support ends with branch 580"),
                                   ("Driver flavour", "proprietary", "no open kernel module support"),
                                   ("CUDA ceiling", "12.9", "last toolkit that can target sm_70"),
                                   ("NGC PyTorch tag", "25.06", "newest NGC PyTorch")]:
        line = next(line for line in text.splitlines() if setting in line)
        assert value in line and reason in line


def test_decision_table_shows_warnings():
    facts = host("10de:ffff", gpu_caps={"00:1e.0": "9.0"})
    console = Console(record=True, width=400)
    console.print(format_decision(decide(facts, request())))
    text = console.export_text()
    assert "Warning" in text and "add a row to section 'gpus'" in text


# -- the table itself ------------------------------------------------------------------------------

def test_shipped_table_loads_and_maps_the_gpus_people_run():
    assert compat.gpu_for_pci_id("10DE:1DB1").model == "Tesla V100-SXM2-16GB"
    assert compat.gpu_for_pci_id("10de:2237").describe() == "NVIDIA A10G (Ampere, sm_86)"
    assert compat.instance_gpus("p4d.24xlarge").count == 8
    assert compat.ngc_pytorch_cuda("25.06-py3") == "12.9"
    assert compat.min_branch_for_cuda("13.0") == 580
    assert compat.bundled_driver("12.9") == "575.51.03"
    assert compat.architecture("Volta").last_branch == 580


TABLE = textwrap.dedent("""\
    policy: {minimum_cuda: "12.0", as_of: "2026-11", ngc_min_compute_capability: "6.0", source: "test"}
    architectures:
      - {name: volta, label: Volta, open_modules: "no", last_branch: 580, cuda_min: null, cuda_max: "12.9", compute_capabilities: ["7.0"], source: s}
    gpus:
      - {pci_id: "10de:1db4", model: "Tesla V100-PCIE-16GB", architecture: volta, compute_capability: "7.0", source: s}
      - {pci_id: "10de:1db1", model: "Tesla V100-SXM2-16GB", architecture: volta, compute_capability: "7.0", source: s}
    driver_branches:
      - {branch: 580, designation: long-term, end_of_life: "2028-06", open_only: false, source: s}
    cuda_min_driver:
      - {cuda_major: 12, min_branch: 525, source: s}
    cuda_releases:
      - {cuda: "12.9", driver: "575.51.03", source: s}
    ngc_pytorch:
      - {tag: "25.06", cuda: "12.9", source: s}
    ubuntu_releases:
      - {version: "24.04", codename: noble, driver_packages: ["580-server"], cuda_repo: ubuntu2404, cuda_repo_key: 3bf863cc.pub, tmp_tmpfs: false, source: s}
    ec2_instances:
      - {type: p3.2xlarge, pci_id: "10de:1db1", count: 1, source: s}
    """)


def broken_table(tmp_path, old: str, new: str):
    """A copy of TABLE with one edit, written to a file; the edit must apply."""
    assert old in TABLE
    path = tmp_path / "gpu_compat.yml"
    path.write_text(TABLE.replace(old, new, 1))
    return path


def test_the_test_table_is_valid(tmp_path):
    assert load_table(broken_table(tmp_path, "", "")).gpus["10de:1db1"].model == "Tesla V100-SXM2-16GB"


def test_a_row_without_a_source_is_refused_naming_file_row_and_line(tmp_path):
    path = broken_table(tmp_path, 'SXM2-16GB", architecture: volta, compute_capability: "7.0", source: s}',
                        'SXM2-16GB", architecture: volta, compute_capability: "7.0"}')
    with pytest.raises(CompatTableError) as caught:
        load_table(path)
    assert str(caught.value) == f"{path}:6: gpus row 2 (10de:1db1): missing 'source'"


def test_a_row_naming_an_unknown_architecture_is_refused(tmp_path):
    path = broken_table(tmp_path, 'SXM2-16GB", architecture: volta', 'SXM2-16GB", architecture: volt')
    with pytest.raises(CompatTableError) as caught:
        load_table(path)
    assert str(caught.value) == (f"{path}:6: gpus row 2 (10de:1db1): architecture 'volt' is not in "
                                 f"section 'architectures' (volta)")


def test_a_malformed_value_is_refused(tmp_path):
    path = broken_table(tmp_path, 'driver: "575.51.03"', 'driver: "latest"')
    with pytest.raises(CompatTableError) as caught:
        load_table(path)
    assert str(caught.value) == (f"{path}:12: cuda_releases row 1 (12.9): 'driver' 'latest' is not "
                                 f"a driver version such as \"575.51.03\"")


def test_an_unconfirmed_row_without_a_note_is_refused(tmp_path):
    path = broken_table(tmp_path, 'compute_capability: "7.0", source: s}\n  - {pci_id: "10de:1db1"',
                        'compute_capability: "7.0", checked: false, source: s}\n  - {pci_id: "10de:1db1"')
    with pytest.raises(CompatTableError) as caught:
        load_table(path)
    assert str(caught.value) == (f"{path}:5: gpus row 1 (10de:1db4): 'checked: false' needs a 'note' saying what "
                                 f"the source is and why it was not confirmed")


def test_every_unconfirmed_row_of_the_shipped_table_says_why():
    import yaml
    document = yaml.safe_load((PROJECT / "provision" / "data" / "gpu_compat.yml").read_text())
    unexplained = [(section, row) for section, rows in document.items() if isinstance(rows, list)
                   for row in rows if row.get("checked") is False and not row.get("note")]
    assert unexplained == []
    assert all(row.get("source") for rows in document.values() if isinstance(rows, list) for row in rows)


def test_a_duplicate_row_is_refused(tmp_path):
    path = broken_table(tmp_path, 'pci_id: "10de:1db4"', 'pci_id: "10de:1db1"')
    with pytest.raises(CompatTableError) as caught:
        load_table(path)
    assert str(caught.value) == f"{path}:6: gpus row 2 (10de:1db1): duplicate pci_id '10de:1db1'"
