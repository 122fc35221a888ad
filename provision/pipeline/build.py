"""invoke build: render the recipe's context here, upload what changed to the builder, docker build there."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable

from provision.errors import RecipeError
from provision.ops.base import q
from provision.pipeline.builddir import build_dir, ensure_sh, shell_path
from provision.pipeline.recipes import Recipe, digest, render_context
from provision.pipeline.registry import login_sh, registry_of
from provision.pipeline.remote import Remote


@dataclass
class BuildResult:
    image: str
    uploaded: list[str]
    removed: list[str]


def sync_script(recipe: Recipe, remote: Remote, context: dict[str, bytes]) -> tuple[list[str], list[str], list[str]]:
    """Shell lines that set $build_dir and bring its NAME/ to `context` (one round trip to compare hashes
    first), leaving the shell in that directory; the paths uploaded and removed."""
    root = build_dir(remote.host)
    directory = f'"$build_dir"/{q(recipe.name)}'
    listing = remote.run("listing the build context", f"build_dir={shell_path(root)}\n"
                         f"cd {directory} 2>/dev/null && find . -type f -exec sha256sum {{}} + ; true")
    there = {}
    for line in listing:
        hash_, _, path = line.partition("  ")
        if path.startswith("./"):
            there[path[2:]] = hash_
    changed = [path for path, content in context.items() if there.get(path) != digest(content)]
    stale = [path for path in there if path not in context]
    script = [ensure_sh(root), f"mkdir -p {directory} && cd {directory} || exit 1"]
    script += [f"rm -f {q(path)}" for path in stale]
    for path in changed:
        encoded = base64.encodebytes(context[path]).decode()
        script.append(f"mkdir -p \"$(dirname {q(path)})\" && base64 -d > {q(path)} <<'PROV_EOF'\n{encoded}PROV_EOF")
    return script, changed, stale


def build(recipe: Recipe, remote: Remote, on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Build recipe's image on the builder: two round trips (compare hashes; upload the changes and build)."""
    context = render_context(recipe)
    if "Dockerfile" not in context:
        raise RecipeError(f"recipe {recipe.name}: no Dockerfile.j2 to docker build from; "
                          f"its apptainer.def.j2 builds with: invoke sif {recipe.name} --from def")
    sync, changed, stale = sync_script(recipe, remote, context)
    login, secrets = login_sh(registry_of(recipe.values["base"]), remote)
    script = [login, *sync]
    script.append(f"echo '== provision: docker build {recipe.image} ({len(changed)} file(s) uploaded)'")
    # One build per platform (a platform other than the builder's runs its RUN steps under qemu's
    # binfmt handlers); with several, each is tagged NAME:TAG-ARCH and push joins them in one manifest list.
    script += [f"docker build --platform {q(platform)} -t {q(recipe.image_for(platform))} . 2>&1 || exit 1"
               for platform in recipe.platforms]
    remote.run(f"docker build {recipe.image}", "\n".join(filter(None, script)) + "\n", on_line, secrets)
    return BuildResult(recipe.image, changed, stale)
