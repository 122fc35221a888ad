"""Base-image checks for image recipes: will this base image run on the GPUs it is built for?"""
from __future__ import annotations

import re

from provision.gpu.compat import Architecture, parse_version, table
from provision.gpu.preflight import PreflightError, newest_ngc_tag  # noqa: F401

_NGC_PYTORCH = re.compile(r"(?:nvcr\.io/)?nvidia/pytorch:(?P<tag>\d\d\.\d\d)(?:-py3)?")
_CUDA_BASE = re.compile(r"(?:(?:nvcr|docker)\.io/)?(?:nvidia/)?cuda:(?P<cuda>\d+\.\d+)(?:\.\d+)?(?:-\S*)?")


def _architectures(names: list[str]) -> list[Architecture]:
    known = table().architectures
    found = []
    for name in names:
        arch = known.get(str(name).strip().lower())
        if arch is None:
            raise PreflightError(f"GPU architecture {name!r} is not in gpu_compat.yml; "
                                 f"use one of {', '.join(a.label for a in known.values())}")
        found.append(arch)
    return found


def base_image_cuda(base_image: str) -> tuple[str, bool] | None:
    """(CUDA version, is it an NGC framework image) of a base image this module knows, else None."""
    ngc = _NGC_PYTORCH.fullmatch(base_image.strip())
    if ngc:
        row = table().ngc_tag(ngc["tag"])
        return (row.cuda, True) if row else None
    cuda_base = _CUDA_BASE.fullmatch(base_image.strip())
    return (cuda_base["cuda"], False) if cuda_base else None


def check_image_for_gpus(base_image: str, architectures: list[str]) -> None:
    """Raise PreflightError if base_image cannot run on one of the architectures; other images pass.

    Knows NGC PyTorch (nvcr.io/nvidia/pytorch:<tag>-py3, via the ngc_pytorch rows) and CUDA base
    images (nvidia/cuda:<version>-...); for any other base there is nothing to check.
    """
    archs = _architectures(architectures)
    t = table()
    ngc = _NGC_PYTORCH.fullmatch(base_image.strip())
    cuda_base = _CUDA_BASE.fullmatch(base_image.strip())
    if ngc:
        row = t.ngc_tag(ngc["tag"])
        if row is None:
            raise PreflightError(f"base image {base_image}: NGC PyTorch {ngc['tag']} is not in gpu_compat.yml; "
                                 f"add a row to section 'ngc_pytorch' with its CUDA version from the NGC release notes")
        cuda, built = row.cuda, f"NGC PyTorch {row.tag} is built on CUDA {row.cuda}"
    elif cuda_base:
        cuda, built = cuda_base["cuda"], f"it is CUDA {cuda_base['cuda']}"
    else:
        return
    if ngc:
        floor_cc = parse_version(t.ngc_min_compute_capability)
        for arch in archs:
            if arch.compute_capabilities and all(parse_version(c) < floor_cc for c in arch.compute_capabilities):
                raise PreflightError(f"base image {base_image} cannot run on {arch.label} GPUs: NGC framework images "
                                     f"need compute capability {t.ngc_min_compute_capability} or later; use a CUDA "
                                     f"{arch.cuda_max} base image")
    ceilings = [a.cuda_max for a in archs if a.cuda_max]
    floors = [a.cuda_min for a in archs if a.cuda_min]
    ceiling = min(ceilings, key=parse_version) if ceilings else None
    floor = max(floors, key=parse_version) if floors else None
    newest = newest_ngc_tag(t, ceiling, floor)
    for arch in archs:
        too_new = arch.cuda_max and parse_version(cuda) > parse_version(arch.cuda_max)
        too_old = arch.cuda_min and parse_version(cuda) < parse_version(arch.cuda_min)
        if not (too_new or too_old):
            continue
        why = (f"CUDA {arch.cuda_max} is the last toolkit for {arch.label}" if too_new
               else f"{arch.label} needs CUDA {arch.cuda_min} or newer")
        if ngc:
            fix = (f"{newest.tag} is the newest NGC PyTorch that runs there; "
                   f"use nvcr.io/nvidia/pytorch:{newest.tag}-py3"
                   if newest else "no NGC PyTorch tag in gpu_compat.yml runs there")
        else:
            fix = f"use a CUDA {arch.cuda_max if too_new else arch.cuda_min} base image"
        raise PreflightError(f"base image {base_image} cannot run on {arch.label} GPUs: {built}, and {why}; {fix}")
