"""Foreign-architecture programs on this machine: qemu-user's binfmt handler for arm64 (docker builds, arm64 hosts)."""

from pathlib import Path

from provision.lab.commands import LabError, run

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
HANDLERS = {"arm64": "qemu-aarch64"}


def ensure_emulation(arch: str = "arm64") -> Path:
    """Register qemu-user-static's handler for `arch` (flags F: it works inside namespaces); return its entry.

    binfmt_misc is mounted when it is not; a handler already registered is left as it is, and
    nothing registered here is ever unregistered (the registration is this machine's).
    """
    handler = HANDLERS.get(arch)
    if handler is None:
        raise LabError(f"no emulation for {arch} in the lab (known: {', '.join(HANDLERS)})")
    entry = BINFMT_DIR / handler
    if entry.exists():
        return entry
    if not (BINFMT_DIR / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], what="mounting binfmt_misc")
    run(["update-binfmts", "--enable", handler], what=f"registering {handler} (qemu-user-static, binfmt-support)")
    if "flags: PF" not in entry.read_text() and "F" not in entry.read_text().split("flags:")[-1]:
        raise LabError(f"{entry} has no F flag: the handler would not be found inside lab hosts and builds")
    return entry
