"""LAB STAND-IN hardware: a fake NVIDIA GPU on the PCI bus and a boot id that changes per boot.

Neither is used by the tool; the lab and the tests use them to give a namespaced host what a
real GPU machine has. The tool reads ``/sys/bus/pci/devices/*/{vendor,device,class}`` and
``/proc/sys/kernel/random/boot_id``; in a lab host both are this machine's (no GPU, and a boot
id that never changes when the lab "reboots" a host). So, when the lab starts a host, after it
has mounted sysfs and proc inside the host's mount namespace:

    mount --bind ROOT/var/lib/lab-standin/pci-devices ROOT/sys/bus/pci/devices  # plant_gpu()
    mount --bind HOSTDIR/boot_id ROOT/proc/sys/kernel/random/boot_id            # write_boot_id()

with a fresh ``write_boot_id`` at every start (both binds work in a private mount namespace:
checked on this machine). The stand-in nvidia-smi, nvidia-ctk and ubuntu-drivers read the same
paths, so tool and stand-ins see the same GPU and the same boots.
"""

from __future__ import annotations

import uuid
from pathlib import Path

# Where plant_gpu() puts the fake tree inside a host's root filesystem.
PLANTED_PCI_TREE = "var/lib/lab-standin/pci-devices"
# A host bridge, so that a tree is not all NVIDIA (a reader must filter by vendor and class).
HOST_BRIDGE = ("0000:00:00.0", "8086:1237", "0x060000")


def fake_pci_tree(directory: Path, devices: list[tuple[str, str, str]]) -> Path:
    """Write DIRECTORY/<address>/{vendor,device,class,...} for each (address, "vvvv:dddd", class).

    Formats are the kernel's: ``0x10de``, ``0x1db1``, ``0x030200`` (3D controller; ``0x030000``
    for VGA), each with a newline; plus subsystem ids and a modalias as sysfs has them.
    """
    directory = Path(directory)
    for address, pci_id, pci_class in devices:
        vendor, device = (part.lower() for part in pci_id.split(":"))
        node = directory / address
        node.mkdir(parents=True, exist_ok=True)
        klass = int(pci_class, 16)
        files = {
            "vendor": f"0x{vendor}", "device": f"0x{device}", "class": f"0x{klass:06x}",
            "subsystem_vendor": f"0x{vendor}", "subsystem_device": "0x0000",
            "modalias": (f"pci:v0000{vendor.upper()}d0000{device.upper()}sv0000{vendor.upper()}"
                         f"sd00000000bc{klass >> 16:02X}sc{(klass >> 8) & 0xFF:02X}i{klass & 0xFF:02X}"),
        }
        for name, value in files.items():
            (node / name).write_text(value + "\n")
    return directory


def plant_gpu(rootfs: Path, pci_id: str = "10de:1db1", address: str = "0000:00:1e.0",
              pci_class: str = "0x030200") -> Path:
    """Put a fake PCI tree with one NVIDIA GPU (default: Tesla V100-SXM2-16GB, as on a p3)
    and a host bridge under ROOTFS/var/lib/lab-standin/pci-devices; return that directory,
    for the lab to bind-mount over the host's /sys/bus/pci/devices."""
    return fake_pci_tree(Path(rootfs) / PLANTED_PCI_TREE, [HOST_BRIDGE, (address, pci_id, pci_class)])


def write_boot_id(path: Path) -> str:
    """Write a fresh boot id (as /proc/sys/kernel/random/boot_id shows one) to PATH; return it."""
    boot_id = str(uuid.uuid4())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(boot_id + "\n")
    return boot_id
