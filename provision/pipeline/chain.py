"""invoke pipeline: build, push, sif and ship in order, stopping at the first failure with what to do next."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from provision.errors import ProvisionError
from provision.pipeline.build import build
from provision.pipeline.recipes import Recipe, arch_of, load_recipe
from provision.pipeline.registry import parse_registry, push
from provision.pipeline.remote import Remote
from provision.pipeline.sif import build_sifs
from provision.ship import ship
from provision.errors import PipelineError  # noqa: F401  (defined with the others)


@dataclass
class PipelineResult:
    image: str = ""
    pushed: str = ""
    sif: str = ""
    shipped: str = ""
    stages: list[str] = field(default_factory=list)


def run_pipeline(name: str, builder: str, destination: str | None, inventory: Path, registry: str | None,
                 images_dir: Path, on_line: Callable[[str], None], console=None) -> PipelineResult:
    """build -> push (when a registry is given) -> sif -> ship (when a destination is given)."""
    recipe = load_recipe(name, images_dir)
    registry = registry or recipe.values.get("registry")
    if registry:
        parse_registry(registry)  # a malformed address is refused before any connection
    result = PipelineResult()
    stage = "build"
    try:
        with Remote(inventory, builder) as remote:
            result.image = build(recipe, remote, on_line).image
            result.stages.append(stage)
            if registry:
                stage = "push"
                result.pushed = ", ".join(push(recipe, remote, registry, on_line))
                result.stages.append(stage)
            stage = "sif"
            sifs = build_sifs(recipe, remote, on_line=on_line)
            result.sif = sifs[0]
            result.stages.append(stage)
        if destination:
            stage = "ship"
            if recipe.multi_platform:
                result.sif = _sif_for(recipe, sifs, destination, inventory)
            result.shipped = ship(f"{builder}:{result.sif}", destination, inventory, console=console).summary()
            result.stages.append(stage)
    except ProvisionError as exc:
        done = ", ".join(result.stages) or "nothing"
        hints = {
            "build": f"fix the recipe in images/{name}/ or the builder, then: invoke build {name} --on {builder}",
            "push": f"check the login for {registry} (registry_logins of {builder}), then: invoke push {name} --on {builder}"
                    + (f" --registry {registry}" if registry else ""),
            "sif": f"free space or fix apptainer on {builder}, then: invoke sif {name} --on {builder}",
            "ship": f"then: invoke ship {builder}:{result.sif} {destination} (it resumes)",
        }
        raise PipelineError(f"pipeline {name}: {stage} failed (done: {done}): {exc}\nnext: {hints[stage]}") from None
    return result


# The destination's architecture as Docker platforms name it (uname -m otherwise).
ARCH_SCRIPT = 'case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac'


def _sif_for(recipe: Recipe, sifs: list[str], destination: str, inventory: Path) -> str:
    """Of a SIF per platform, the one for the destination's architecture (asked there over SSH)."""
    from provision.cluster.remote import login_session
    with login_session(destination, inventory) as session:
        done = session.run(ARCH_SCRIPT)
    arch = done.stdout.strip()
    for platform, path in zip(recipe.platforms, sifs):
        if arch_of(platform) == arch:
            return path
    raise ProvisionError(f"{destination} is {arch or 'of an unknown architecture'}; recipe {recipe.name} builds for "
                         f"{', '.join(recipe.platforms)}: add linux/{arch} to its platforms")
