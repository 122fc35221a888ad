"""Mounts of this machine that the lab makes: host overlays, and finding all of them again."""

from pathlib import Path

from provision.lab.commands import run


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (\\040 for a space) decoded."""
    return field.encode().decode("unicode_escape")


def mount_points() -> list[Path]:
    """Every mount point of this process's mount namespace, in mount order."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [Path(_unescape(line.split()[4])) for line in lines]


def mounts_below(directory: Path) -> list[Path]:
    """The mount points at or below `directory`, deepest (and latest) first."""
    directory = directory.resolve()
    below = [m for m in mount_points() if m == directory or directory in m.parents]
    return sorted(reversed(below), key=lambda m: len(m.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    return path.resolve() in mount_points()


def mount_overlay(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """Mount an overlay of `lower` with its writes going to `upper`, at `merged`."""
    for directory in (upper, work, merged):
        directory.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        what=f"mounting the overlay of {lower} at {merged}")


def unmount_below(directory: Path) -> None:
    """Unmount everything mounted at or below `directory` (lazily when busy)."""
    for mount_point in mounts_below(directory):
        result = run(["umount", str(mount_point)], what=f"unmounting {mount_point}", check=False)
        if result.returncode != 0:
            run(["umount", "--lazy", str(mount_point)], what=f"unmounting {mount_point}")
