"""A builder's build directory (host variable build_dir): where build contexts and SIF files go."""
from __future__ import annotations

import re

from provision.errors import InventoryError
from provision.inventory import Host
from provision.ops.base import q

DEFAULT_BUILD_DIR = "~/provision-build"
# An absolute path or one under the home directory; no '..', no control characters.
SAFE_PATH = re.compile(r"^(~/|/)[^\x00-\x1f\x7f]*$")


def build_dir(host: Host) -> str:
    """The host's build_dir as written in the inventory (default ~/provision-build); refused when unsafe."""
    value = host.vars.get("build_dir") or DEFAULT_BUILD_DIR
    if not isinstance(value, str) or not SAFE_PATH.match(value) or "/../" in f"{value}/":
        raise InventoryError(f"host {host.name}: build_dir {value!r} must be an absolute path or start with ~/ "
                             "(e.g. /opt/voltaBuild), without '..'")
    return value.rstrip("/") or "/"


def shell_path(path: str) -> str:
    """`path` as one sh word: quoted, with a leading ~/ as "$HOME"/."""
    return f'"$HOME"/{q(path[2:])}' if path.startswith("~/") else q(path)


def ensure_sh(path: str) -> str:
    """sh setting $build_dir to `path`, created when missing and owned by the connecting user.

    A directory the user cannot create (/opt/...) or write is made theirs with `sudo -n`, as the
    inventory's build hosts allow (provision itself runs as root through it).
    """
    return f"""build_dir={shell_path(path)}
if [ ! -d "$build_dir" ]; then
  mkdir -p "$build_dir" 2> /dev/null || sudo -n install -d -o "$(id -u)" -g "$(id -g)" "$build_dir" \\
    || {{ echo "cannot create build_dir $build_dir as $(id -un), even with sudo -n"; exit 1; }}
fi
[ -w "$build_dir" ] || sudo -n chown "$(id -u):$(id -g)" "$build_dir" \\
  || {{ echo "build_dir $build_dir is not writable by $(id -un), and sudo -n cannot chown it"; exit 1; }}"""
