"""The GPU entrypoint of framework recipes: the GPUs listed when visible, else what to pass, then the command."""
from __future__ import annotations

import os
import subprocess

import pytest

from provision.pipeline.recipes import GPU_ENTRYPOINT, load_recipe, render_context

# `nvidia-smi -L` as the driver's utility prints it (one line per GPU).
LIST = "GPU 0: Tesla V100-SXM2-16GB (UUID: GPU-2c1f7a4e-5d3b-4e0a-9c51-0f3b8c2d7e61)"


def run(tmp_path, env: dict[str, str], gpu: bool) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "nvidia-smi"
    if gpu:
        stub.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] && echo '{LIST}'\n")
    else:  # what nvidia-smi says on a host whose driver is not reachable
        stub.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n")
    stub.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    return subprocess.run(["sh", str(GPU_ENTRYPOINT), "sh", "-c", "echo ran \"$0\"", "arg"], capture_output=True,
                          text=True, env={"PATH": path, **env}, timeout=30)


def test_visible_gpus_are_listed_and_the_command_runs(tmp_path):
    done = run(tmp_path, {}, gpu=True)
    assert done.stderr == f"gpu-check: {LIST}\n"
    assert (done.returncode, done.stdout) == (0, "ran arg\n")


@pytest.mark.parametrize("env, hint", [({}, "pass --gpus all to docker"), ({"APPTAINER_CONTAINER": "/x.sif"}, "pass --nv to apptainer"),
                                       ({"SINGULARITY_CONTAINER": "/x.sif"}, "pass --nv to apptainer")])
def test_without_gpus_it_says_what_to_pass_and_still_runs_the_command(tmp_path, env, hint):
    done = run(tmp_path, env, gpu=False)
    assert "gpu-check: no NVIDIA GPU is visible in this container; " + hint in done.stderr
    assert (done.returncode, done.stdout) == (0, "ran arg\n")


def test_framework_recipes_carry_the_entrypoint_into_their_image():
    for name in ("fastai2", "pytorch-volta", "bert-classifier"):
        context = render_context(load_recipe(name))
        assert context["gpu-entrypoint.sh"] == GPU_ENTRYPOINT.read_bytes()
        dockerfile = context["Dockerfile"].decode()
        assert 'ENTRYPOINT ["/bin/sh", "/usr/local/bin/gpu-entrypoint"]' in dockerfile
        assert dockerfile.index("ENTRYPOINT") < dockerfile.index("CMD")
