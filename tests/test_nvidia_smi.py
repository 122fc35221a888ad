"""nvidia-smi parsers on real outputs (tests/fixtures/nvidia-smi, sources in its README)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from provision.gpu.nvidia_smi import (NVIDIA_SMI_QUERY, NVIDIA_SMI_QUERY_ARGS, SmiFailure, SmiFailureKind,
                                      SmiReport, classify_failure, parse_query, parse_table)

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_query_command_is_the_one_the_verify_step_documents():
    assert NVIDIA_SMI_QUERY == ("nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total,"
                                "compute_cap,persistence_mode --format=csv,noheader,nounits")
    assert shlex.split(NVIDIA_SMI_QUERY) == list(NVIDIA_SMI_QUERY_ARGS)


@pytest.mark.parametrize("name, driver, cuda, count, model, bus_id, memory, persistence", [
    ("v100-2x-550.54.14.txt", "550.54.14", "12.4", 2, "Tesla V100-SXM2-16GB", "00000000:00:04.0", 16384, "Disabled"),
    ("t4-1x-495.29.05.txt", "495.29.05", "11.5", 1, "Tesla T4", "00000000:00:1E.0", 15109, "Enabled"),
    ("a100-8x-570.172.08.txt", "570.172.08", "12.8", 8, "NVIDIA A100-SXM4-40GB", "00000000:0F:00.0", 40960,
     "Disabled"),
    ("h100-1x-590.48.01.txt", "590.48.01", "13.1", 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", 81559, "Enabled"),
])
def test_default_table_gives_driver_cuda_and_every_gpu(name, driver, cuda, count, model, bus_id, memory, persistence):
    report = parse_table(fixture(name))
    assert isinstance(report, SmiReport)
    assert (report.driver_version, report.cuda_version, len(report.gpus)) == (driver, cuda, count)
    first = report.gpus[0]
    assert (first.index, first.name, first.bus_id, first.memory_total_mib, first.persistence_mode) == (
        0, model, bus_id, memory, persistence)
    assert [gpu.index for gpu in report.gpus] == list(range(count))
    assert all(gpu.driver_version == driver for gpu in report.gpus)


def test_multi_gpu_table_keeps_each_bus_id():
    report = parse_table(fixture("a100-8x-570.172.08.txt"))
    assert [gpu.bus_id[-7:] for gpu in report.gpus] == ["0F:00.0", "15:00.0", "51:00.0", "54:00.0",
                                                        "8D:00.0", "92:00.0", "D6:00.0", "DA:00.0"]


def test_query_output_gives_compute_capability_and_persistence():
    report = parse_query(fixture("query-h100-1x-590.48.01.csv"))
    assert isinstance(report, SmiReport)
    assert report.driver_version == "590.48.01"
    (gpu,) = report.gpus
    assert (gpu.index, gpu.name, gpu.bus_id, gpu.memory_total_mib, gpu.compute_capability, gpu.persistence_mode) == (
        0, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", 81559, "9.0", "Enabled")


def test_query_output_of_several_gpus_and_missing_values():
    # Shaped like NVIDIA_SMI_QUERY's output; written for this test, not captured.
    text = ("0, Tesla V100-SXM2-16GB, 00000000:00:1B.0, 580.95.05, 16384, 7.0, Enabled\n"
            "1, Tesla V100-SXM2-16GB, 00000000:00:1C.0, 580.95.05, [N/A], 7.0, Disabled\n")
    report = parse_query(text)
    assert [gpu.index for gpu in report.gpus] == [0, 1]
    assert report.gpus[1].memory_total_mib is None


@pytest.mark.parametrize("name, kind, library", [
    ("error-no-driver.txt", SmiFailureKind.NO_DRIVER, None),
    ("error-no-driver-modprobe.txt", SmiFailureKind.NO_DRIVER, None),
    ("error-version-mismatch.txt", SmiFailureKind.VERSION_MISMATCH, "570.124"),
    ("error-version-mismatch-old.txt", SmiFailureKind.VERSION_MISMATCH, None),
])
@pytest.mark.parametrize("parse", [parse_table, parse_query])
def test_error_outputs_become_typed_failures(parse, name, kind, library):
    failure = parse(fixture(name))
    assert isinstance(failure, SmiFailure)
    assert (failure.kind, failure.library_version) == (kind, library)
    assert failure.output == fixture(name).strip()


def test_no_driver_failure_names_the_line_and_the_fix():
    failure = classify_failure(fixture("error-no-driver-modprobe.txt"))
    assert str(failure) == (
        "nvidia-smi failed (no-driver): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        "driver. Make sure that the latest NVIDIA driver is installed and running.; the NVIDIA kernel module is "
        "not loaded: reboot after installing the driver; if it persists, check that headers for the running "
        "kernel were installed and nouveau is blacklisted")


def test_version_mismatch_failure_says_to_reboot_and_hold_packages():
    failure = classify_failure(fixture("error-version-mismatch.txt"))
    assert failure.message == "Failed to initialize NVML: Driver/library version mismatch"
    assert "reboot, then hold the nvidia-/libnvidia- packages" in failure.hint


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.txt") if not p.name.startswith("error")))
def test_working_outputs_are_not_mistaken_for_failures(name):
    assert classify_failure(fixture(name)) is None


def test_missing_binary_empty_output_and_garbage_are_failures_too():
    assert parse_query("bash: nvidia-smi: command not found\n").kind is SmiFailureKind.NOT_INSTALLED
    assert parse_query("").kind is SmiFailureKind.NO_DEVICES
    assert parse_table("No devices were found\n").kind is SmiFailureKind.NO_DEVICES
    assert parse_query("index, name\n").kind is SmiFailureKind.UNRECOGNISED
    assert parse_table("Segmentation fault\n").kind is SmiFailureKind.UNRECOGNISED
    assert parse_table("Failed to initialize NVML: Unknown Error\n").kind is SmiFailureKind.NVML_UNKNOWN
