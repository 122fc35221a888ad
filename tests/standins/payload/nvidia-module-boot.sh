#!/bin/sh
# LAB STAND-IN for the kernel at boot (package @PACKAGE@): load the armed NVIDIA module and show
# it where the real module shows itself. nvidia.ko creates /proc/driver/nvidia/version, whose
# first line reads "NVRM version: NVIDIA UNIX x86_64 Kernel Module  VERSION  DATE" (proprietary)
# or "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  VERSION  Release Build ..." (open)
# (open-gpu-kernel-modules kernel-open/nvidia/nv-procfs.c), with aarch64 in place of x86_64 on arm64
# hosts (as their kernel logs show: geerlingguy/raspberry-pi-pcie-devices#692 for 580.95.05 open,
# HeyMeco/Rockchip-pcie-devices#2 for 535.161.07 proprietary); the GPUs it drives get a
# /sys/bus/pci/devices/SLOT/driver link to .../drivers/nvidia. Here /proc/driver is a tmpfs.
#@include nvidia-state.sh
set -e
module=$(nv_loaded_module)
[ -n "$module" ] || exit 0
version=${module% *} flavour=${module#* }
if [ ! -d /proc/driver/nvidia ]; then
    mount -t tmpfs -o mode=755,size=1m lab-standin-nvidia /proc/driver
    mkdir -p /proc/driver/nvidia
fi
machine=$(uname -m)
if [ "$flavour" = open ]; then
    line="NVRM version: NVIDIA UNIX Open Kernel Module for $machine  $version  Release Build  (lab-standin)"
else
    line="NVRM version: NVIDIA UNIX $machine Kernel Module  $version  Release Build  (lab-standin)"
fi
printf '%s\nGCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n' "$line" > /proc/driver/nvidia/version
# The planted PCI tree lies in this host's root (the lab binds it over /sys/bus/pci/devices).
tree=/var/lib/provision-lab/pci-devices
nv_driven_gpus "$version" "$flavour" | while IFS='|' read -r bus _rest; do
    slot=$(echo "${bus#0000}" | tr A-F a-f)
    [ -d "$tree/$slot" ] && ln -sfn ../../../bus/pci/drivers/nvidia "$tree/$slot/driver"
done
exit 0
