"""Image recipes (images/NAME/recipe.yml + templates): validated, preflighted, rendered to a build context."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.gpu.images import check_image_for_gpus
from provision.templating import make_environment, render_file
from provision.yamlfile import display_path, load_yaml
from provision.errors import RecipeError  # noqa: F401  (defined with the others)

IMAGES_DIR = Path(__file__).resolve().parent.parent.parent / "images"
# The entrypoint of recipes with gpu_entrypoint: true: says what to pass when no GPU is visible.
GPU_ENTRYPOINT = Path(__file__).resolve().parent.parent / "gpu-entrypoint.sh"
FIELDS = {"name": str, "tag": str, "base": str, "gpu_architectures": list, "platform": str, "platforms": list,
          "python_packages": list,
          "files": dict, "ports": list, "start": str, "requirements": str, "pip_index_url": str, "registry": str,
          "gpu_entrypoint": bool, "slurm": dict}
REQUIRED = ("name", "tag", "base", "gpu_architectures")
# An OCI platform as docker's --platform takes one: os/arch[/variant] (containerd/platforms).
PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


@dataclass
class Recipe:
    name: str
    directory: Path
    values: dict[str, Any]

    @property
    def image(self) -> str:
        return f"{self.values['name']}:{self.values['tag']}"

    @property
    def platform(self) -> str:
        return self.platforms[0]

    @property
    def platforms(self) -> list[str]:
        """`platforms:` when given, else the one `platform:` (linux/amd64 by default)."""
        return list(self.values.get("platforms") or [self.values.get("platform", "linux/amd64")])

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    def image_for(self, platform: str) -> str:
        """NAME:TAG, or NAME:TAG-ARCH for each platform of a recipe with several (docker keeps one per tag)."""
        return f"{self.image}-{arch_of(platform)}" if self.multi_platform else self.image

    def sif_name(self, platform: str) -> str:
        """NAME.sif, or NAME_ARCH.sif for each platform of a recipe with several."""
        return f"{self.name}_{arch_of(platform)}.sif" if self.multi_platform else f"{self.name}.sif"


def arch_of(platform: str) -> str:
    """linux/arm64 -> arm64; linux/arm/v7 -> armv7."""
    return "".join(platform.split("/")[1:])


def _check_platforms(values: dict[str, Any], where: str) -> None:
    given = values.get("platforms") or [values["platform"]]
    for platform in given:
        if not isinstance(platform, str):
            raise RecipeError(f"{where}: platforms: {platform!r} is not a platform string (linux/amd64)")
        if "," in platform:
            listed = ", ".join(p.strip() for p in platform.split(","))
            raise RecipeError(f"{where}: platform {platform!r} names several platforms; write them as a list: "
                              f"platforms: [{listed}]")
        if not PLATFORM.match(platform):
            raise RecipeError(f"{where}: platform {platform!r} is not os/arch[/variant] (linux/amd64, linux/arm64)")
    if len(set(given)) != len(given):
        raise RecipeError(f"{where}: platforms lists one platform twice: {given}")


def load_recipe(name: str, images_dir: Path = IMAGES_DIR, overrides: dict[str, Any] | None = None) -> Recipe:
    """The recipe images/NAME/recipe.yml with its defaults; refused if malformed or if its base cannot run on its GPUs."""
    directory = Path(images_dir) / name
    file = directory / "recipe.yml"
    if not file.exists():
        known = sorted(p.name for p in Path(images_dir).iterdir() if (p / "recipe.yml").exists())
        raise RecipeError(f"no recipe {name!r} in {display_path(Path(images_dir))}/; recipes: {', '.join(known)}")
    data = load_yaml(file, RecipeError)
    where = display_path(file)
    if not isinstance(data, dict):
        raise RecipeError(f"{where}:1: a recipe is a mapping")
    values = {"platform": "linux/amd64", "python_packages": [], "files": {}, "ports": [], "start": "",
              "gpu_entrypoint": False, **data,
              **(overrides or {})}
    for key, value in values.items():
        if key not in FIELDS:
            raise RecipeError(f"{where}: unknown field {key!r} (fields: {', '.join(sorted(FIELDS))})")
        if not isinstance(value, FIELDS[key]):
            raise RecipeError(f"{where}: {key} must be a {FIELDS[key].__name__}, got {value!r}")
    for key in REQUIRED:
        if not values.get(key):
            raise RecipeError(f"{where}: missing {key}")
    _check_platforms(values, where)
    for src in values["files"]:
        if not (directory / src).is_file():
            raise RecipeError(f"{where}: files: {src} does not exist in {display_path(directory)}/")
    if values.get("requirements") and values["requirements"] not in values["files"]:
        raise RecipeError(f"{where}: requirements: {values['requirements']} is not one of files: (its destination "
                          f"in the image is what pip installs from)")
    check_image_for_gpus(values["base"], values["gpu_architectures"])
    return Recipe(name, directory, values)


def render_context(recipe: Recipe, bootstrap: tuple[str, str] | None = None) -> dict[str, bytes]:
    """The build context: rendered Dockerfile and/or Apptainer definition plus the recipe's files.

    The definition sees `bootstrap` and `bootstrap_from` (default: docker and the recipe's base;
    `bootstrap` gives another, e.g. docker and REGISTRY/NAME:TAG for the image pushed earlier).
    """
    env = make_environment([recipe.directory])
    where = f"recipe {recipe.name}"
    shown = display_path(recipe.directory)
    agent, source = bootstrap or ("docker", recipe.values["base"])
    values = {**recipe.values, "bootstrap": agent, "bootstrap_from": source}
    context: dict[str, bytes] = {}
    for template, target in (("Dockerfile.j2", "Dockerfile"), ("apptainer.def.j2", "apptainer.def")):
        if (recipe.directory / template).exists():
            context[target] = render_file(env, template, values, where, shown).encode()
    if not context:
        raise RecipeError(f"{shown}/: no Dockerfile.j2 or apptainer.def.j2 to build from")
    for src in recipe.values["files"]:
        context[src] = (recipe.directory / src).read_bytes()
    if recipe.values["gpu_entrypoint"]:
        context["gpu-entrypoint.sh"] = GPU_ENTRYPOINT.read_bytes()
    return context


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
