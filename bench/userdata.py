"""Benchmark: how long `invoke userdata` takes to render the full builder stack (target: under 0.3 s)."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from provision.cli import userdata  # noqa: E402

SSM = {"ngc_login_api_key": {"secret_ssm": "/ngc/api-key"}}


def in_process(repeat: int = 20) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        userdata(PROJECT / "hosts", "p3-builder", None, SSM, "mime", False)
        times.append(time.perf_counter() - started)
    return times


def whole_command(repeat: int = 5) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "invoke", "userdata", "--host", "p3-builder", "-o", "/dev/null",
                        "-e", "ngc_login_api_key={secret_ssm: /ngc/api-key}"], cwd=PROJECT, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - started)
    return times


if __name__ == "__main__":
    warm = in_process()
    cold = whole_command()
    size = len(userdata(PROJECT / "hosts", "p3-builder", None, SSM, "mime", False).body)
    print(f"{'render the builder stack (in process, median of 20)':<58} {statistics.median(warm):7.3f} s  target < 0.300 s")
    print(f"{'invoke userdata, whole command incl. Python start (median of 5)':<58} {statistics.median(cold):7.3f} s")
    print(f"{'size (gzip MIME)':<58} {size:7,} bytes of 16,384")
