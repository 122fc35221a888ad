"""LAB STAND-INS for vendor repositories: Docker CE, NVIDIA (toolkit, drivers), Apptainer.

Signed apt repositories serving packages of the vendors' names, laid out as the vendors lay
theirs out, so that the roles' documented install steps work unchanged but for the URLs; and
fake GPU hardware for lab hosts. See build.py (repositories), serve.py, lab_hardware.py.
"""

from .build import (STANDIN_APT_PACKAGES, AptSource, StandinRepo, StandinRepos, build_standin_repos,
                    ensure_packages, lab_url)
from .lab_hardware import fake_pci_tree, plant_gpu, write_boot_id
from .serve import StandinServer, serve

__all__ = ["STANDIN_APT_PACKAGES", "AptSource", "StandinRepo", "StandinRepos", "StandinServer",
           "build_standin_repos", "ensure_packages", "fake_pci_tree", "lab_url", "plant_gpu",
           "serve", "write_boot_id"]
