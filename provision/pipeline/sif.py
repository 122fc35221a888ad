"""invoke sif: apptainer build on the builder, on local disk, after checking there is room for it."""
from __future__ import annotations

from typing import Callable

from provision.errors import RemoteError
from provision.ops.base import q
from provision.pipeline.builddir import build_dir, ensure_sh
from provision.pipeline.recipes import Recipe
from provision.pipeline.remote import Remote

# A SIF build needs about twice the image: the unpacked layers and the squashfs being written.
SPACE_FACTOR = 2


def build_sif(recipe: Recipe, remote: Remote, from_registry: str | None = None,
              on_line: Callable[[str], None] | None = None) -> str:
    """Build NAME.sif from the docker daemon's image (or the registry's); return its path on the builder."""
    source = f"docker://{from_registry.rstrip('/')}/{recipe.image}" if from_registry else f"docker-daemon:{recipe.image}"
    out = f'"$build_dir"/{q(recipe.name + ".sif")}'
    script = f"""
{ensure_sh(build_dir(remote.host))}
# APPTAINER_TMPDIR / APPTAINER_CACHEDIR as the apptainer role set them for every login.
eval "$(grep -E '^APPTAINER_(TMPDIR|CACHEDIR)=' /etc/environment 2>/dev/null | sed 's/^/export /')"
export APPTAINER_TMPDIR="${{APPTAINER_TMPDIR:-/var/tmp}}"
mkdir -p "$APPTAINER_TMPDIR" || exit 1
size=$(docker image inspect --format '{{{{.Size}}}}' {q(recipe.image)}) || {{ echo "no image {recipe.image} on this builder: run invoke build first"; exit 1; }}
need=$(( size * {SPACE_FACTOR} / 1024 ))
for dir in "$APPTAINER_TMPDIR" "$build_dir"; do
  free=$(df -Pk "$dir" | awk 'NR==2 {{print $4}}')
  if [ "$free" -lt "$need" ]; then
    echo "not enough room in $dir: $free KiB free, a SIF of {recipe.image} needs about $need KiB"
    exit 3
  fi
done
echo "== provision: apptainer build $build_dir/{recipe.name}.sif from {source} (tmp $APPTAINER_TMPDIR)"
apptainer build --force {out} {q(source)} 2>&1 || exit 1
sha256sum {out}
"""
    lines = remote.run(f"apptainer build {recipe.name}.sif", script, on_line)
    if not lines or len(lines[-1].split()) != 2:
        raise RemoteError(f"apptainer build {recipe.name}.sif on {remote.host.name}: no sha256sum line at the end")
    return lines[-1].split()[1]
