"""invoke sif: apptainer build on the builder, on local disk, from the docker daemon, a registry or the recipe's definition."""
from __future__ import annotations

from typing import Callable

from provision.errors import RecipeError, RemoteError
from provision.ops.base import q
from provision.pipeline.build import sync_script
from provision.pipeline.builddir import build_dir, ensure_sh
from provision.pipeline.recipes import Recipe, render_context
from provision.pipeline.remote import Remote

# A SIF build needs about twice the image: the unpacked layers and the squashfs being written.
SPACE_FACTOR = 2
SOURCES = ("docker-daemon", "registry", "def")

# APPTAINER_TMPDIR / APPTAINER_CACHEDIR as the apptainer role set them for every login (the build disk).
_APPTAINER_DIRS = """
eval "$(grep -E '^APPTAINER_(TMPDIR|CACHEDIR)=' /etc/environment 2>/dev/null | sed 's/^/export /')"
export APPTAINER_TMPDIR="${APPTAINER_TMPDIR:-/var/tmp}"
mkdir -p "$APPTAINER_TMPDIR" ${APPTAINER_CACHEDIR:+"$APPTAINER_CACHEDIR"} || exit 1
"""


def choose_source(recipe: Recipe, source: str | None, from_registry: str | None) -> str:
    """--from as given; else registry with --from-registry; else docker-daemon with a Dockerfile.j2, def without."""
    if source is None:
        if from_registry:
            return "registry"
        return "docker-daemon" if (recipe.directory / "Dockerfile.j2").exists() else "def"
    if source not in SOURCES:
        raise RecipeError(f"sif --from {source!r}: one of {', '.join(SOURCES)}")
    if source == "def" and not (recipe.directory / "apptainer.def.j2").exists():
        raise RecipeError(f"sif {recipe.name} --from def: {recipe.directory}/apptainer.def.j2 does not exist")
    if source == "registry" and not from_registry:
        raise RecipeError(f"sif {recipe.name} --from registry: name the registry with --from-registry")
    return source


def _room(need_kib: str, what: str = "this SIF") -> str:
    return f"""need={need_kib}
for dir in "$APPTAINER_TMPDIR" "$build_dir"; do
  free=$(df -Pk "$dir" | awk 'NR==2 {{print $4}}')
  if [ "$free" -lt "$need" ]; then
    echo "not enough room in $dir: $free KiB free, {what} needs about $need KiB"
    exit 3
  fi
done
"""


def _apptainer_login(registry: str, remote: Remote) -> tuple[str, list[str]]:
    from provision.cluster.pull import login_script
    script, secrets = login_script(registry, remote.host.vars, remote.host.name)
    return (script.replace("return 4", "exit 4") if script else ""), secrets


def build_sifs(recipe: Recipe, remote: Remote, from_registry: str | None = None,
               on_line: Callable[[str], None] | None = None, source: str | None = None,
               nohttps: bool = False) -> list[str]:
    """One SIF per platform of the recipe (NAME.sif, or NAME_ARCH.sif each); their paths on the builder."""
    if recipe.multi_platform and choose_source(recipe, source, from_registry) == "def":
        raise RecipeError(f"sif {recipe.name} --from def: a definition builds for the builder's own architecture; "
                          f"for platforms {', '.join(recipe.platforms)} use --from docker-daemon or --from registry")
    return [build_sif(recipe, remote, from_registry, on_line, source, nohttps, platform) for platform in recipe.platforms]


def build_sif(recipe: Recipe, remote: Remote, from_registry: str | None = None,
              on_line: Callable[[str], None] | None = None, source: str | None = None, nohttps: bool = False,
              platform: str | None = None) -> str:
    """Build NAME.sif (NAME_ARCH.sif for one `platform` of several) on the builder; return its path there.

    docker-daemon: the image `invoke build` made (room for twice its size checked first);
    registry: docker://REGISTRY/NAME:TAG, with no need for the image in the local daemon;
    def: the rendered apptainer.def with its %files staged beside it in the build context, built
    there (bootstrapping from REGISTRY/NAME:TAG when --from-registry is given, else from the base).
    Registry credentials (registry_logins) reach `apptainer registry login` on stdin only.
    """
    source = choose_source(recipe, source, from_registry)
    platform = platform or recipe.platform
    sif_name = recipe.sif_name(platform)
    out = f'"$build_dir"/{q(sif_name)}'
    flag = " --no-https" if nohttps else ""
    if recipe.multi_platform:  # Apptainer refuses an image of another platform than its own unless told
        arch, _, variant = platform.split("/", 1)[1].partition("/")  # apptainer build --arch [--arch-variant]
        flag += f" --arch {q(arch)}" + (f" --arch-variant {q(variant)}" if variant else "")
    registry = (from_registry or "").rstrip("/")
    secrets: list[str] = []
    script = [ensure_sh(build_dir(remote.host)), _APPTAINER_DIRS, 'runtime=$(command -v apptainer || command -v singularity) || '
                           '{ echo "no apptainer on $(hostname)"; exit 127; }']
    if source == "docker-daemon":
        local = recipe.image_for(platform)
        image = f"docker-daemon:{local}"
        script.append(f"size=$(docker image inspect --format '{{{{.Size}}}}' {q(local)}) || "
                      f"{{ echo \"no image {local} on this builder: run invoke build first\"; exit 1; }}")
        script.append(_room(f"$(( size * {SPACE_FACTOR} / 1024 ))", f"a SIF of {local}"))
        build = f'"$runtime" build{flag} --force {out} {q(image)} 2>&1 || exit 1'
    elif source == "registry":
        image = f"docker://{registry}/{recipe.image}"
        login, secrets = _apptainer_login(registry.split("/", 1)[0], remote)
        script += [login, _room("1048576")]  # the size is unknown before the pull: at least 1 GiB free
        build = f'"$runtime" build{flag} --force {out} {q(image)} 2>&1 || exit 1'
    else:
        bootstrap = ("docker", f"{registry}/{recipe.image}") if registry else None
        context = {path: content for path, content in render_context(recipe, bootstrap).items() if path != "Dockerfile"}
        sync, _, _ = sync_script(recipe, remote, context)
        base_registry = (bootstrap[1] if bootstrap else recipe.values["base"]).split("/", 1)[0]
        login, secrets = _apptainer_login(base_registry, remote)
        image = f"$build_dir/{recipe.name}/apptainer.def"
        script += [login, *sync, _room("1048576")]
        build = f'"$runtime" build{flag} --force {out} apptainer.def 2>&1 || exit 1'
    script += [f'echo "== provision: apptainer build $build_dir/{sif_name} from {image} '
               f'(tmp $APPTAINER_TMPDIR)"', build, f"sha256sum {out}"]
    lines = remote.run(f"apptainer build {sif_name}", "\n".join(filter(None, script)) + "\n", on_line, secrets)
    if not lines or len(lines[-1].split()) != 2:
        raise RemoteError(f"apptainer build {sif_name} on {remote.host.name}: no sha256sum line at the end")
    return lines[-1].split()[1]
