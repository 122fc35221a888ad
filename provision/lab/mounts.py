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


# Run by bind_into_host in a child process of its own (setns into a mount namespace needs a
# single-threaded process): clone the directory's mount tree here with open_tree(2), enter the
# host's mount namespace and root, attach the clone there with move_mount(2). It works whether
# the host entered its root with chroot or with pivot_root (then this machine's paths are not
# visible in the host's mount namespace at all). Syscall numbers 428/429 are the same on every
# architecture.
_BIND_INTO_HOST = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = -100, 1, 0o2000000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH, CLONE_NEWNS, SYS_OPEN_TREE, SYS_MOVE_MOUNT = 4, 0x20000, 428, 429
def check(result, what):
    if result < 0:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")
    return result
source, pid, target = sys.argv[1:]
tree = check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), "open_tree " + source)
root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
check(libc.setns(os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY), CLONE_NEWNS), "setns")
os.fchdir(root)
os.chroot(".")
os.makedirs(target, exist_ok=True)
check(libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
      "move_mount to " + target)
'''


def bind_into_host(source: Path, init_pid: int, target: str) -> None:
    """Bind this machine's `source` at `target` (a path in the host) inside the running host of `init_pid`."""
    import sys
    run([sys.executable, "-c", _BIND_INTO_HOST, str(source), str(init_pid), target],
        what=f"binding {source} at {target} in the host of pid {init_pid}")
