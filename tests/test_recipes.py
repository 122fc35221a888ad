"""The shipped image recipes load and render to build contexts; sif checks for room before building, under a local sh."""
from __future__ import annotations

import json
import os
import re

import pytest

from provision.errors import RemoteError
from provision.pipeline.recipes import load_recipe, render_context
from provision.pipeline.remote import Remote
from provision.pipeline.sif import build_sif
from tests.helpers import PROJECT, write

SHIPPED = sorted(p.parent.name for p in (PROJECT / "images").glob("*/recipe.yml"))


def test_the_readme_recipes_are_shipped():
    assert {"fastai2", "bert-classifier", "pytorch-volta"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_recipe_renders_a_build_context_with_everything_it_names(name):
    recipe = load_recipe(name, PROJECT / "images")
    context = render_context(recipe)
    values = recipe.values
    dockerfile = context["Dockerfile"].decode()
    assert "{{" not in dockerfile and "{%" not in dockerfile
    assert re.search(rf"^FROM {re.escape(values['base'])}$", dockerfile, re.M)
    run_lines = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    for package in values["python_packages"]:
        assert any(package in line.split() for line in run_lines), f"{package} is installed"
    for src, dest in values["files"].items():
        assert f"COPY {src} {dest}" in dockerfile.splitlines()
        assert context[src] == (recipe.directory / src).read_bytes()
    for port in values["ports"]:
        assert f"EXPOSE {port}" in dockerfile.splitlines()
    if values["start"]:
        assert dockerfile.rstrip().endswith(f'CMD ["sh", "-c", {json.dumps(values["start"])}]')
    if "apptainer.def" in context:
        definition = context["apptainer.def"].decode()
        assert "{{" not in definition and f"From: {values['base']}" in definition.splitlines()


# -- sif's room check ------------------------------------------------------------------------------

# `docker image inspect --format '{{.Size}}' IMAGE` prints the image's size in bytes
# (https://docs.docker.com/reference/cli/docker/image/inspect/); `apptainer build --force OUT SRC`
# writes OUT (https://apptainer.org/docs/user/latest/cli/apptainer_build.html). Nothing else is modelled.
FAKE_DOCKER = """#!/bin/sh
[ "$1 $2 $3" = "image inspect --format" ] && [ "$4" = '{{.Size}}' ] || { echo "fake docker: not modelled: $*" >&2; exit 2; }
cat "$FAKE_STATE/size"
"""
FAKE_APPTAINER = """#!/bin/sh
[ "$1 $2" = "build --force" ] || { echo "fake apptainer: not modelled: $*" >&2; exit 2; }
echo built > "$3" && echo "$3" >> "$FAKE_STATE/built"
"""


@pytest.fixture
def builder(tmp_path, monkeypatch):
    """A local builder whose HOME is tmp_path, with the docker and apptainer above on PATH."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    state.mkdir()
    write(bin_dir / "docker", FAKE_DOCKER).chmod(0o755)
    write(bin_dir / "apptainer", FAKE_APPTAINER).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_STATE", str(state))
    (tmp_path / "home").mkdir()
    write(tmp_path / "hosts" / "inventory.yml", "all:\n  hosts:\n    here: {connection: local}\n")
    remote = Remote(tmp_path / "hosts", "here")
    yield remote, state
    remote.close()


def free_kib(*paths) -> int:
    """The least room, in KiB, left to an unprivileged user in any of `paths` (what df's Available says)."""
    return min(os.statvfs(path).f_bavail * os.statvfs(path).f_frsize // 1024 for path in paths)


def test_sif_builds_when_there_is_room_for_twice_the_image(builder, tmp_path):
    remote, state = builder
    room = free_kib("/var/tmp", tmp_path / "home")
    (state / "size").write_text(str(int(room * 1024 * 0.4)))
    path = build_sif(load_recipe("pytorch-volta", PROJECT / "images"), remote)
    assert path.endswith("/provision-build/pytorch-volta.sif")
    assert (state / "built").read_text() == f"{tmp_path}/home/provision-build/pytorch-volta.sif\n"


def test_sif_refuses_before_building_when_twice_the_image_does_not_fit(builder, tmp_path):
    remote, state = builder
    room = free_kib("/var/tmp", tmp_path / "home")
    (state / "size").write_text(str(int(room * 1024 * 0.6)))
    with pytest.raises(RemoteError, match=r"\(exit 3\)[\s\S]*not enough room in .*KiB free, a SIF of "
                                          r"pytorch-volta:.* needs about \d+ KiB"):
        build_sif(load_recipe("pytorch-volta", PROJECT / "images"), remote)
    assert not (state / "built").exists()
