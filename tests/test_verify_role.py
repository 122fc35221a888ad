"""The verify role's checks, compiled for a V100 host and run under a local sh against docker and apptainer that follow their docs."""
from __future__ import annotations

import os
import subprocess

import pytest

from provision.compiler import plan_host
from provision.facts import EXAMPLE_FACTS
from provision.inventory import Host
from provision.roles import load_roles
from tests.helpers import PROJECT, write

V100 = {**EXAMPLE_FACTS, "gpus": [{"slot": "0000:00:1e.0", "pci_id": "10de:1db1", "class": "0x030200"}]}
GPU_LINE = "GPU 0: Tesla V100-SXM2-16GB (UUID: GPU-2a9a3a1e-0000-0000-0000-000000000000)"

# A container sees the host's GPUs only when run with --gpus (docker run reference, "Access an NVIDIA
# GPU": https://docs.docker.com/reference/cli/docker/container/run/#gpus) and Apptainer only with
# --nv (https://apptainer.org/docs/user/latest/gpu.html); without them nvidia-smi is not in the
# container. `nvidia-smi -L` prints one "GPU i: NAME (UUID: ...)" line per GPU. Each tool logs its argv.
FAKE_DOCKER = f"""#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG/docker"
[ "$1 $2" = "run --rm" ] || {{ echo "fake docker: not modelled: $*" >&2; exit 2; }}
shift 2
gpus=no
while [ "$1" = --gpus ]; do [ "$2" = all ] && gpus=yes; shift 2; done
image=$1; shift
[ "$*" = "nvidia-smi -L" ] || {{ echo "fake docker: not modelled: $*" >&2; exit 2; }}
if [ "$gpus" = yes ]; then echo "{GPU_LINE}"; else
  echo 'docker: Error response from daemon: exec: "nvidia-smi": executable file not found in $PATH' >&2; exit 127; fi
"""
FAKE_APPTAINER = f"""#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG/apptainer"
[ "$1" = exec ] || {{ echo "fake apptainer: not modelled: $*" >&2; exit 2; }}
shift
nv=no
[ "$1" = --nv ] && {{ nv=yes; shift; }}
shift
[ "$*" = "nvidia-smi -L" ] || {{ echo "fake apptainer: not modelled: $*" >&2; exit 2; }}
if [ "$nv" = yes ]; then echo "{GPU_LINE}"; else echo "FATAL: nvidia-smi: not found" >&2; exit 255; fi
"""


@pytest.fixture
def checks(tmp_path):
    """{task name: a function running that verify step's check under sh with the fakes on PATH}."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    log.mkdir()
    write(bin_dir / "docker", FAKE_DOCKER).chmod(0o755)
    write(bin_dir / "apptainer", FAKE_APPTAINER).chmod(0o755)
    plan = plan_host(load_roles(PROJECT / "roles", ["verify"]), Host("h", {}, []), {}, V100)

    def runner(check: str):
        def run() -> subprocess.CompletedProcess:
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
            return subprocess.run(["sh", "-c", check], capture_output=True, text=True, env=env, timeout=30)
        return run
    return {p.task.name: runner(p.step.check) for p in plan.steps}, log


def test_docker_is_asked_for_all_gpus_and_the_check_passes_on_seeing_one(checks):
    steps, log = checks
    done = steps["A CUDA container sees the GPUs through docker"]()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == GPU_LINE
    assert (log / "docker").read_text() == "run --rm --gpus all nvidia/cuda:12.9.1-base-ubuntu22.04 nvidia-smi -L\n"


def test_apptainer_is_asked_for_nv_and_the_check_passes_on_seeing_a_gpu(checks):
    steps, log = checks
    done = steps["Apptainer runs a container with --nv"]()
    assert done.returncode == 0, done.stderr
    assert (log / "apptainer").read_text() == "exec --nv docker://nvidia/cuda:12.9.1-base-ubuntu22.04 nvidia-smi -L\n"


def test_a_container_without_gpus_fails_the_check(checks, tmp_path):
    steps, _ = checks
    write(tmp_path / "bin" / "docker", FAKE_DOCKER.replace('gpus=yes;', 'gpus=no;')).chmod(0o755)
    done = steps["A CUDA container sees the GPUs through docker"]()
    assert done.returncode != 0 and "executable file not found" in done.stdout + done.stderr
