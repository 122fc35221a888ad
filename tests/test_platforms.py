"""Recipes for several platforms: validated at load, one build per platform, one manifest list, a SIF per architecture."""
import os
import subprocess
from pathlib import Path

import pytest

from provision.errors import RecipeError
from provision.pipeline.recipes import Recipe, load_recipe
from provision.pipeline.registry import parse_registry, push_script
from provision.pipeline.remote import Remote
from provision.pipeline.sif import build_sifs
from tests.helpers import write
from tests.test_cluster import write_inventory

# A recording apptainer for these unit tests only: argv kept; `build` skips its flags (--arch takes a value)
# and writes its target.
RECORDING_APPTAINER = """#!/bin/sh
printf '%s | cwd=%s\\n' "$*" "$PWD" >> "$LOG_DIR/argv"
case $1 in
  build) shift; while [ "${1#--}" != "$1" ]; do case $1 in --arch|--arch-variant) shift ;; esac; shift; done
         printf 'sif of %s' "$2" > "$1" ;;
esac
"""

MULTI = {"name": "fastai2", "tag": "25.06", "platforms": ["linux/amd64", "linux/arm64"]}


def _recipe_dir(tmp_path: Path, platform_lines: str) -> Path:
    write(tmp_path / "images" / "multi" / "recipe.yml", f"""
        name: multi
        tag: "1"
        base: reg.example:5000/lab/base:1
        gpu_architectures: [hopper]
        {platform_lines}
    """)
    write(tmp_path / "images" / "multi" / "Dockerfile.j2", "FROM {{ base }}\n")
    write(tmp_path / "images" / "multi" / "apptainer.def.j2", "Bootstrap: docker\nFrom: {{ bootstrap_from }}\n")
    return tmp_path / "images"


def test_a_platform_string_with_a_comma_is_refused_with_the_list_to_write(tmp_path):
    images = _recipe_dir(tmp_path, "platform: linux/amd64,linux/arm64")
    with pytest.raises(RecipeError, match=r"recipe.yml: platform 'linux/amd64,linux/arm64' names several platforms; "
                                          r"write them as a list: platforms: \[linux/amd64, linux/arm64\]"):
        load_recipe("multi", images)


@pytest.mark.parametrize("lines, message", [
    ("platforms: [linux/amd64, 'linux/arm64,linux/arm/v7']", "names several platforms"),
    ("platforms: [linux/amd64, linux/amd64]", "lists one platform twice"),
    ("platforms: [amd64]", "is not os/arch"),
    ("platforms: [linux/amd64, 7]", "7 is not a platform string"),
])
def test_malformed_platform_lists_are_refused_at_load(tmp_path, lines, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("multi", _recipe_dir(tmp_path, lines))


def test_one_platform_keeps_the_plain_image_and_sif_names():
    recipe = Recipe("fastai2", Path("."), {"name": "fastai2", "tag": "25.06", "platform": "linux/arm64"})
    assert recipe.platforms == ["linux/arm64"] and not recipe.multi_platform
    assert recipe.image_for("linux/arm64") == "fastai2:25.06" and recipe.sif_name("linux/arm64") == "fastai2.sif"


def test_several_platforms_get_an_image_and_a_sif_name_per_architecture():
    recipe = Recipe("fastai2", Path("."), {**MULTI, "platforms": [*MULTI["platforms"], "linux/arm/v7"]})
    assert [recipe.image_for(p) for p in recipe.platforms] == ["fastai2:25.06-amd64", "fastai2:25.06-arm64",
                                                               "fastai2:25.06-armv7"]
    assert [recipe.sif_name(p) for p in recipe.platforms] == ["fastai2_amd64.sif", "fastai2_arm64.sif",
                                                              "fastai2_armv7.sif"]


def test_a_push_of_several_platforms_pushes_each_then_one_manifest_list_per_tag():
    script, targets = push_script(Recipe("fastai2", Path("."), MULTI), parse_registry("reg.example:5000/team"),
                                  ["25.06", "latest"], "LOGIN")
    assert targets == ["reg.example:5000/team/fastai2:25.06", "reg.example:5000/team/fastai2:latest"]
    for target in targets:
        for arch in ("amd64", "arm64"):
            assert f"docker tag fastai2:25.06-{arch} {target}-{arch} || exit 1\ndocker push {target}-{arch} 2>&1" in script
        assert (f"docker manifest create $insecure {target} {target}-amd64 {target}-arm64 || exit 1\n"
                f"docker manifest push $insecure --purge {target} 2>&1 || exit 1") in script
    # --insecure only where the daemon was told the registry is insecure
    assert """'{{with index .RegistryConfig.IndexConfigs "reg.example:5000"}}{{.Secure}}{{end}}'""" in script
    assert "docker tag fastai2:25.06 " not in script


def test_the_insecure_flag_follows_what_docker_info_says(tmp_path):
    script, _ = push_script(Recipe("fastai2", Path("."), MULTI), parse_registry("reg.example:5000"), ["1"], "")
    check = script.split("docker manifest rm")[0].splitlines()[-2:]
    for said, flag in (("false", "--insecure"), ("true", ""), ("", "")):
        fake = tmp_path / "bin"
        fake.mkdir(exist_ok=True)
        (fake / "docker").write_text(f"#!/bin/sh\necho '{said}'\n")
        (fake / "docker").chmod(0o755)
        out = subprocess.run(["sh", "-c", "\n".join(check) + '\nprintf %s "$insecure"'], capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
        assert out.stdout == flag, (said, out)


def test_sif_builds_one_sif_per_platform_with_apptainers_arch_flag_and_refuses_a_def(tmp_path, monkeypatch):
    images = _recipe_dir(tmp_path, "platforms: [linux/amd64, linux/arm64]")
    bin_dir, logs = tmp_path / "bin", tmp_path / "logs"
    bin_dir.mkdir(), logs.mkdir()
    (bin_dir / "apptainer").write_text(RECORDING_APPTAINER)
    (bin_dir / "docker").write_text("#!/bin/sh\necho 1000\n")  # image inspect --format {{.Size}}
    for tool in ("apptainer", "docker"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LOG_DIR", str(logs))
    monkeypatch.setenv("HOME", str(tmp_path))
    inventory = write_inventory(tmp_path, {"b": {"connection": "local"}})
    recipe = load_recipe("multi", images)
    with Remote(inventory, "b") as remote:
        paths = build_sifs(recipe, remote, source="docker-daemon")
        with pytest.raises(RecipeError, match="a definition builds for the builder's own architecture; for platforms "
                                              "linux/amd64, linux/arm64 use --from docker-daemon or --from registry"):
            build_sifs(recipe, remote, source="def")
    assert paths == [f"{tmp_path}/provision-build/multi_{arch}.sif" for arch in ("amd64", "arm64")]
    argv = [line.split(" | ")[0] for line in (logs / "argv").read_text().splitlines()]
    assert argv == [f"build --arch {arch} --force {tmp_path}/provision-build/multi_{arch}.sif docker-daemon:multi:1-{arch}"
                    for arch in ("amd64", "arm64")]
