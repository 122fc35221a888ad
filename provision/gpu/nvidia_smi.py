"""Parsers for nvidia-smi's outputs: the CSV query the verify step runs, the default table, and its errors.

Every parser returns either an SmiReport (the driver answered) or an SmiFailure whose kind says
what went wrong and whose hint says what to do; none of them raises on odd output.
"""
from __future__ import annotations

import csv
import enum
import re
import shlex
from dataclasses import dataclass

QUERY_FIELDS = ("index", "name", "pci.bus_id", "driver_version", "memory.total", "compute_cap",
                "persistence_mode")
NVIDIA_SMI_QUERY_ARGS = ("nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits")
NVIDIA_SMI_QUERY = shlex.join(NVIDIA_SMI_QUERY_ARGS)
"""The exact command line the verify step runs; parse its stdout (and stderr) with parse_query."""


@dataclass(frozen=True)
class SmiGpu:
    index: int
    name: str
    bus_id: str | None                 # "00000000:00:1E.0"
    driver_version: str | None
    memory_total_mib: int | None
    compute_capability: str | None     # "7.0"; not in the default table
    persistence_mode: str | None       # "Enabled" / "Disabled"


@dataclass(frozen=True)
class SmiReport:
    """nvidia-smi talked to the driver: its version, the CUDA version it reports, and the GPUs."""

    driver_version: str | None
    cuda_version: str | None
    gpus: tuple[SmiGpu, ...]


class SmiFailureKind(enum.Enum):
    NO_DRIVER = "no-driver"                   # kernel module not loaded
    VERSION_MISMATCH = "version-mismatch"     # loaded module and user-space libraries differ
    NOT_INSTALLED = "not-installed"           # no nvidia-smi on PATH
    NVML_UNKNOWN = "nvml-unknown-error"       # container lost its device access (cgroups)
    NO_DEVICES = "no-devices"                 # driver loaded, no GPU found
    UNRECOGNISED = "unrecognised"             # output this parser does not know


_HINTS = {
    SmiFailureKind.NO_DRIVER: "the NVIDIA kernel module is not loaded: reboot after installing the driver; if it "
                              "persists, check that headers for the running kernel were installed and nouveau "
                              "is blacklisted",
    SmiFailureKind.VERSION_MISMATCH: "the loaded kernel module is older or newer than the driver libraries (usually "
                                     "an unattended upgrade moved the driver): reboot, then hold the nvidia-/"
                                     "libnvidia- packages",
    SmiFailureKind.NOT_INSTALLED: "nvidia-smi is not installed: install nvidia-utils-<branch>-server (ubuntu-drivers "
                                  "--gpgpu does not pull it in)",
    SmiFailureKind.NVML_UNKNOWN: "the container lost access to the GPU devices (typically after systemctl "
                                 "daemon-reload with the systemd cgroup driver): restart the container, and use "
                                 "CDI or the cgroupfs driver to avoid it",
    SmiFailureKind.NO_DEVICES: "the driver found no GPU: check the instance type or that the GPU is passed through",
    SmiFailureKind.UNRECOGNISED: "nvidia-smi printed something this parser does not know; see the output",
}


@dataclass(frozen=True)
class SmiFailure:
    kind: SmiFailureKind
    output: str                         # what nvidia-smi printed, stripped
    library_version: str | None = None  # "570.124" from the version-mismatch message, when printed

    @property
    def hint(self) -> str:
        return _HINTS[self.kind]

    @property
    def message(self) -> str:
        """The line of the output that says what failed (the first line if none does)."""
        lines = self.output.splitlines()
        pattern = next((p for p, kind in _FAILURES if kind is self.kind), None)
        matching = [line for line in lines if pattern and pattern.search(line)]
        return (matching or lines or ["(no output)"])[0]

    def __str__(self) -> str:
        return f"nvidia-smi failed ({self.kind.value}): {self.message}; {self.hint}"


_FAILURES = (
    (re.compile(r"Driver/library version mismatch"), SmiFailureKind.VERSION_MISMATCH),
    (re.compile(r"couldn't communicate with the NVIDIA driver"), SmiFailureKind.NO_DRIVER),
    (re.compile(r"Failed to initialize NVML: Unknown Error"), SmiFailureKind.NVML_UNKNOWN),
    (re.compile(r"nvidia-smi: (command )?not found|nvidia-smi: No such file"), SmiFailureKind.NOT_INSTALLED),
    (re.compile(r"^No devices were found", re.MULTILINE), SmiFailureKind.NO_DEVICES),
)
_LIBRARY_VERSION = re.compile(r"NVML library version: (\S+)")


def classify_failure(output: str) -> SmiFailure | None:
    """The failure nvidia-smi's output reports, or None if it reports none this module knows."""
    for pattern, kind in _FAILURES:
        if pattern.search(output):
            library = _LIBRARY_VERSION.search(output)
            return SmiFailure(kind, output.strip(), library.group(1) if library else None)
    return None


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", "[N/A]", "N/A", "[Not Supported]") else text


def parse_query(output: str) -> SmiReport | SmiFailure:
    """Parse the output of NVIDIA_SMI_QUERY (one CSV line per GPU, no header, no units)."""
    failure = classify_failure(output)
    if failure:
        return failure
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return SmiFailure(SmiFailureKind.NO_DEVICES, "")
    gpus = []
    for row in csv.reader(lines, skipinitialspace=True):
        if len(row) != len(QUERY_FIELDS) or not row[0].strip().isdigit():
            return SmiFailure(SmiFailureKind.UNRECOGNISED, output.strip())
        index, name, bus_id, driver, memory, cap, persistence = (_value(cell) for cell in row)
        gpus.append(SmiGpu(int(index or 0), name or "", bus_id, driver,
                           int(memory) if memory and memory.isdigit() else None, cap, persistence))
    drivers = {gpu.driver_version for gpu in gpus if gpu.driver_version}
    return SmiReport(drivers.pop() if len(drivers) == 1 else None, None, tuple(gpus))


_HEADER = re.compile(r"NVIDIA-SMI \S+\s+Driver Version: (?P<driver>\S+)(?:\s+CUDA Version: (?P<cuda>\S+))?")
_GPU_LINE = re.compile(r"^\|\s+(?P<index>\d+)\s+(?P<name>\S.*?)\s+(?P<pm>On|Off)\s*\|\s*"
                       r"(?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s")
_MEMORY = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def parse_table(output: str) -> SmiReport | SmiFailure:
    """Parse the default `nvidia-smi` table: driver version, CUDA version and one entry per GPU."""
    failure = classify_failure(output)
    if failure:
        return failure
    header = _HEADER.search(output)
    if header is None:
        return SmiFailure(SmiFailureKind.UNRECOGNISED, output.strip())
    lines = output.splitlines()
    gpus = []
    for number, line in enumerate(lines):
        match = _GPU_LINE.match(line)
        if not match:
            continue
        memory = _MEMORY.search(lines[number + 1]) if number + 1 < len(lines) else None
        gpus.append(SmiGpu(
            index=int(match["index"]), name=match["name"], bus_id=match["bus"],
            driver_version=header["driver"], memory_total_mib=int(memory.group(2)) if memory else None,
            compute_capability=None, persistence_mode="Enabled" if match["pm"] == "On" else "Disabled"))
    if not gpus:
        return SmiFailure(SmiFailureKind.NO_DEVICES, output.strip())
    cuda = header["cuda"] if header["cuda"] not in (None, "N/A") else None
    return SmiReport(header["driver"], cuda, tuple(gpus))
