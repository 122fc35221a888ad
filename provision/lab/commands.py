"""Run this machine's commands for the lab and turn their failures into LabError."""

import shlex
import subprocess
from collections.abc import Sequence

from provision.errors import LabError  # noqa: F401  (defined with the others)


def stderr_tail(stderr: bytes | str | None, lines: int = 8) -> str:
    """The last `lines` lines of a command's stderr, decoded, for an error message."""
    if not stderr:
        return ""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return "\n".join(text.strip().splitlines()[-lines:])


def run(argv: Sequence[str], *, what: str, input: bytes | None = None,
        check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run argv, capturing output; with check, a failure raises LabError saying `what` failed."""
    try:
        result = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: `{shlex.join(argv)}` did not finish in {timeout:g} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"{what}: `{argv[0]}` is not installed (see ensure_packages)") from exc
    if check and result.returncode != 0:
        raise LabError(f"{what}: `{shlex.join(argv)}` exited {result.returncode}\n"
                       f"{stderr_tail(result.stderr)}".rstrip())
    return result
