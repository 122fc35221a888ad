"""The cluster check: a partition's GPUs and driver (Slurm's gres and features, or nvidia-smi on a node) against an image."""
from __future__ import annotations

from pathlib import Path

import pytest

from provision.cluster import gpu_check
from provision.cluster.remote import Completed
from provision.gpu.cluster_check import (NODE_QUERY, SINFO_GPU_FORMAT, check_image_on_partition, complete,
                                         parse_node_query, parse_sinfo_gpus)
from provision.gpu.preflight import PreflightError
from tests.helpers import write

SINFO = ("volta|gpu:v100:4(S:0-1)|nvidia_driver_580.95.05,ib\n"
         "hopper*|gpu:h100:8|nvidia_driver_580.95.05\n"
         "cpu|(null)|ib\n"
         "kepler|gpu:tesla_k80:8|driver-470.256.02\n"
         "untyped|gpu:2|\n")
NGC_2508 = "nvcr.io/nvidia/pytorch:25.08-py3"


def partitions():
    return parse_sinfo_gpus(SINFO)


def test_sinfo_gres_types_and_driver_features_name_each_partitions_gpus():
    found = partitions()
    assert found["volta"].describe() == "v100 (Volta, sm_70) on driver 580.95.05"
    assert found["hopper"].describe() == "h100 (Hopper, sm_90) on driver 580.95.05"
    assert (found["cpu"].gpus, found["cpu"].gres_gpus) == ((), False)
    assert found["kepler"].describe() == "tesla_k80 (Kepler, sm_37) on driver 470.256.02"
    assert found["untyped"].gres_gpus and not complete(found["untyped"])
    assert all(complete(found[name]) for name in ("volta", "hopper", "kepler"))


def test_an_ngc_25_08_image_is_refused_on_v100s_with_the_tag_that_works_and_the_partition_that_fits():
    with pytest.raises(PreflightError) as caught:
        check_image_on_partition("fastai2", NGC_2508, partitions()["volta"], partitions())
    assert str(caught.value) == (
        "image fastai2 (nvcr.io/nvidia/pytorch:25.08-py3, CUDA 13.0) cannot run on partition volta, whose nodes have "
        "v100 (Volta, sm_70) on driver 580.95.05: it has no code for v100 (Volta, sm_70): CUDA 12.9 is the last "
        "toolkit for Volta; choose nvcr.io/nvidia/pytorch:25.06-py3 (the newest NGC PyTorch that runs there), or "
        "partition hopper (h100 (Hopper, sm_90) on driver 580.95.05), or a legacy base image")


def test_the_same_image_is_accepted_on_h100s():
    assert check_image_on_partition("fastai2", NGC_2508, partitions()["hopper"], partitions()) == (
        "nvcr.io/nvidia/pytorch:25.08-py3 (CUDA 13.0) runs on partition hopper: h100 (Hopper, sm_90) on driver "
        "580.95.05")


def test_a_driver_too_old_for_the_images_cuda_is_refused_naming_the_tag_for_that_driver():
    node = parse_node_query("a100", "NVIDIA A100-SXM4-80GB, 8.0, 535.183.01\n" * 2)
    assert node.describe() == "NVIDIA A100-SXM4-80GB (Ampere, sm_80) on driver 535.183.01"
    with pytest.raises(PreflightError) as caught:
        check_image_on_partition("bert", "nvidia/cuda:13.0.0-runtime-ubuntu24.04", node, {})
    assert str(caught.value) == (
        "image bert (nvidia/cuda:13.0.0-runtime-ubuntu24.04, CUDA 13.0) cannot run on partition a100, whose nodes "
        "have NVIDIA A100-SXM4-80GB (Ampere, sm_80) on driver 535.183.01: CUDA 13.0 needs driver branch 580 or "
        "newer, and the nodes run 535.183.01 (branch 535); choose nvcr.io/nvidia/pytorch:25.06-py3 (the newest NGC "
        "PyTorch that runs there), or a legacy base image")


def test_kepler_nodes_get_no_ngc_tag_only_a_legacy_base():
    with pytest.raises(PreflightError) as caught:
        check_image_on_partition("old", "nvcr.io/nvidia/pytorch:20.03-py3", partitions()["kepler"], partitions())
    assert str(caught.value) == (
        "image old (nvcr.io/nvidia/pytorch:20.03-py3, CUDA 10.2) cannot run on partition kepler, whose nodes have "
        "tesla_k80 (Kepler, sm_37) on driver 470.256.02: it has no code for tesla_k80 (Kepler, sm_37): NGC "
        "framework images need compute capability 6.0 or later; choose partition volta (v100 (Volta, sm_70) on "
        "driver 580.95.05), or partition hopper (h100 (Hopper, sm_90) on driver 580.95.05), or a legacy base image "
        "built for these GPUs")


def test_blackwell_nodes_refuse_an_image_older_than_cuda_12_8():
    node = parse_node_query("b200", "NVIDIA B200, 10.0, 580.95.05\n")
    with pytest.raises(PreflightError, match=r"Blackwell needs CUDA 12.8 or newer; choose "
                                             r"nvcr.io/nvidia/pytorch:26.06-py3"):
        check_image_on_partition("x", "nvcr.io/nvidia/pytorch:24.12-py3", node, {})


def test_unknown_bases_pass_and_bad_node_output_is_refused():
    assert "nothing to check" in check_image_on_partition("x", "ubuntu:24.04", partitions()["volta"], {})
    with pytest.raises(PreflightError, match="nvidia-smi on a node printed"):
        parse_node_query("p", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")


class FakeLogin:
    """A login session answering sinfo and srun as a cluster would; records the scripts run."""

    def __init__(self, sinfo: str, node: str | None):
        self.sinfo, self.node, self.calls = sinfo, node, []
        self.host = type("H", (), {"name": "hpc01"})()

    def run(self, body: str, *args: str, **_) -> Completed:
        self.calls.append(args)
        if args == (SINFO_GPU_FORMAT,):
            return Completed(0, self.sinfo, "")
        assert args[1] == NODE_QUERY
        return Completed(0, self.node, "") if self.node else Completed(1, "", "srun: error: Unable to allocate")


def recipe(tmp_path: Path, base: str) -> Path:
    write(tmp_path / "images" / "fastai2" / "recipe.yml", f"name: fastai2\ntag: '1'\nbase: {base}\n")
    return tmp_path / "images"


def test_untyped_gres_asks_a_node_once_and_remembers_it(tmp_path):
    images, cache = recipe(tmp_path, NGC_2508), tmp_path / "cache.json"
    login = FakeLogin("gpu*|gpu:1|\n", "Tesla V100-SXM2-32GB, 7.0, 580.95.05\n")
    with pytest.raises(PreflightError, match="choose nvcr.io/nvidia/pytorch:25.06-py3"):
        gpu_check.require_image_fits(login, "fastai2", None, images, cache)
    assert login.calls == [(SINFO_GPU_FORMAT,), ("gpu", NODE_QUERY)]
    again = FakeLogin("gpu*|gpu:1|\n", None)
    with pytest.raises(PreflightError, match="Tesla V100-SXM2-32GB \\(Volta, sm_70\\) on driver 580.95.05"):
        gpu_check.require_image_fits(again, "fastai2.sif", "gpu", images, cache)
    assert again.calls == [(SINFO_GPU_FORMAT,)], "the second check reads the remembered answer"


def test_a_partition_whose_node_does_not_answer_is_not_blocked(tmp_path):
    login = FakeLogin("gpu*|gpu:1|\n", None)
    said = gpu_check.require_image_fits(login, "fastai2", "gpu", recipe(tmp_path, NGC_2508), tmp_path / "c.json")
    assert said.startswith("partition gpu: its GPUs or driver are unknown")


def test_a_cpu_partition_and_an_image_without_a_recipe_are_not_checked(tmp_path):
    images = recipe(tmp_path, NGC_2508)
    assert "no GPU gres" in gpu_check.require_image_fits(FakeLogin(SINFO, None), "fastai2", "cpu", images,
                                                         tmp_path / "c.json")
    assert "nothing to check" in gpu_check.require_image_fits(FakeLogin(SINFO, None), "other.sif", "volta", images,
                                                              tmp_path / "c.json")
