"""Unit tests of invoke sif's sources (docker-daemon, registry, def) on a local builder with a recording apptainer."""
import os

import pytest

from provision.errors import RecipeError
from provision.pipeline.recipes import load_recipe, render_context
from provision.pipeline.remote import Remote
from provision.pipeline.sif import build_sif, choose_source
from tests.helpers import write
from tests.test_cluster import write_inventory

# A recording apptainer for these unit tests only: argv, cwd and stdin kept; `build` writes its target.
RECORDING_APPTAINER = """#!/bin/sh
printf '%s | cwd=%s\\n' "$*" "$PWD" >> "$LOG_DIR/argv"
case "$1 $2" in
  "registry login") cat > "$LOG_DIR/stdin" ;;
  build*) shift; while [ "${1#--}" != "$1" ]; do shift; done; printf 'sif of %s' "$2" > "$1" ;;
esac
"""


@pytest.fixture
def builder(tmp_path, monkeypatch):
    bin_dir, logs, home = tmp_path / "bin", tmp_path / "logs", tmp_path / "home"
    for directory in (bin_dir, logs, home):
        directory.mkdir()
    (bin_dir / "apptainer").write_text(RECORDING_APPTAINER)
    (bin_dir / "apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LOG_DIR", str(logs))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REG_PW", "reg-secret-42")
    write(tmp_path / "images" / "defonly" / "recipe.yml", """
        name: defonly
        tag: "1"
        base: reg.example:5000/lab/base:1
        gpu_architectures: [volta]
        files: {hello.sh: /usr/local/bin/hello}
        start: hello
    """)
    write(tmp_path / "images" / "defonly" / "hello.sh", "#!/bin/sh\necho hello\n")
    write(tmp_path / "images" / "defonly" / "apptainer.def.j2", """
        Bootstrap: {{ bootstrap }}
        From: {{ bootstrap_from }}
        %files
        {% for src, dest in files.items() %}
            {{ src }} {{ dest }}
        {% endfor %}
    """)
    inventory = write_inventory(tmp_path, {"b": {"connection": "local", "registry_logins": {
        "reg.example:5000": {"username": "me", "password": {"secret_env": "REG_PW"}}}}})
    return inventory, tmp_path / "images", logs, home


def test_a_recipe_with_only_a_definition_builds_from_it_with_its_files_beside_it(builder):
    inventory, images, logs, home = builder
    recipe = load_recipe("defonly", images)
    assert "Dockerfile" not in render_context(recipe) and choose_source(recipe, None, None) == "def"
    lines: list[str] = []
    with Remote(inventory, "b") as remote:
        path = build_sif(recipe, remote, on_line=lines.append, nohttps=True)
    context = home / "provision-build" / "defonly"
    assert path == str(home / "provision-build" / "defonly.sif")
    assert (context / "hello.sh").read_text() == "#!/bin/sh\necho hello\n"
    assert "From: reg.example:5000/lab/base:1" in (context / "apptainer.def").read_text()
    argv = (logs / "argv").read_text().splitlines()
    assert argv[0].startswith("registry login --username me --password-stdin docker://reg.example:5000")
    assert argv[-1] == f"build --no-https --force {home}/provision-build/defonly.sif apptainer.def | cwd={context}"
    assert (logs / "stdin").read_text().strip() == "reg-secret-42" and "reg-secret-42" not in "".join(argv + lines)


def test_from_registry_needs_no_image_in_the_daemon_and_a_def_can_bootstrap_from_it(builder):
    inventory, images, logs, home = builder
    recipe = load_recipe("defonly", images)
    with Remote(inventory, "b") as remote:
        build_sif(recipe, remote, from_registry="reg.example:5000/team")
        build_sif(recipe, remote, from_registry="reg.example:5000/team", source="def")
    argv = (logs / "argv").read_text().splitlines()
    assert any(line.startswith(f"build --force {home}/provision-build/defonly.sif "
                               "docker://reg.example:5000/team/defonly:1") for line in argv)
    assert "From: reg.example:5000/team/defonly:1" in (home / "provision-build/defonly/apptainer.def").read_text()


def test_a_source_that_cannot_be_used_is_refused_naming_it(builder):
    _, images, _, _ = builder
    recipe = load_recipe("defonly", images)
    with pytest.raises(RecipeError, match="--from 'oras': one of docker-daemon, registry, def"):
        choose_source(recipe, "oras", None)
    with pytest.raises(RecipeError, match="--from registry: name the registry with --from-registry"):
        choose_source(recipe, "registry", None)
    fastai2 = load_recipe("fastai2")
    assert choose_source(fastai2, None, None) == "docker-daemon" and choose_source(fastai2, "def", None) == "def"


def test_requirements_must_be_one_of_the_files(tmp_path):
    write(tmp_path / "r" / "recipe.yml", "name: r\ntag: '1'\nbase: debian:12\ngpu_architectures: [volta]\n"
                                         "requirements: reqs.txt\n")
    with pytest.raises(RecipeError, match="requirements: reqs.txt is not one of files:"):
        load_recipe("r", tmp_path)
