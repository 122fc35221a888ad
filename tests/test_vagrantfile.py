"""The Vagrantfile that lets a laptop user try provision on an Ubuntu VM is valid."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import PROJECT


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (apt-get install vagrant)")
def test_vagrantfile_validates():
    run = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=PROJECT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_inventory_has_the_vagrant_host_the_vagrantfile_makes():
    from provision.inventory import load_inventory

    text = (PROJECT / "Vagrantfile").read_text()
    assert 'config.vm.hostname = "vagrant"' in text
    assert load_inventory(PROJECT / "hosts").host("vagrant").vars["declared_facts"]["os_codename"] == "jammy"
