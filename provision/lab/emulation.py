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


# The lab's own handler, beside the machine's: binfmt's C flag (with O) runs a program with the
# credentials of the program, not of qemu, so setuid programs such as sudo work inside an emulated
# host; the machine's handler (qemu-user-static's, "credentials no") runs them as the caller.
# binfmt_misc tries the newest entry first (fs/binfmt_misc.c adds at the head of its list), so while
# the lab's exists it is the one used. Docker's tonistiigi/binfmt installer registers POCF the same way.
LAB_HANDLER_PREFIX = "provision-lab-"


def _hex_escaped(hex_text: str) -> str:
    return "".join(f"\\x{hex_text[i:i + 2]}" for i in range(0, len(hex_text), 2))


def ensure_setuid_emulation(arch: str = "arm64") -> Path:
    """The lab's handler for `arch` with flags POCF (see above), registered now if absent; its entry."""
    machine_entry = ensure_emulation(arch)
    ours = BINFMT_DIR / (LAB_HANDLER_PREFIX + HANDLERS[arch])
    if ours.exists():
        return ours
    fields = dict(line.split(" ", 1) for line in machine_entry.read_text().splitlines() if " " in line)
    registration = (f":{ours.name}:M:{fields['offset']}:{_hex_escaped(fields['magic'])}:"
                    f"{_hex_escaped(fields['mask'])}:{fields['interpreter']}:POCF")
    (BINFMT_DIR / "register").write_text(registration)
    return ours


def remove_lab_handlers() -> None:
    """Unregister the lab's own handlers (never the machine's)."""
    for entry in BINFMT_DIR.glob(LAB_HANDLER_PREFIX + "*"):
        entry.write_text("-1")
