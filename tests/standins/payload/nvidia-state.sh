# LAB STAND-IN snippet shared by the NVIDIA driver, nvidia-smi and Container Toolkit stand-ins:
# the "kernel module" and the GPUs it drives. The build pastes it where a script says
# "#@include nvidia-state.sh"; POSIX sh.
#
# State (under /var/lib/nvidia-standin, so a host's reboot keeps it, as a real disk does):
#   installed  "VERSION FLAVOUR BOOT_ID": armed by a driver postinst; the module loads at the
#              first boot whose /proc/sys/kernel/random/boot_id differs from BOOT_ID.
#   loaded     "BOOT_ID VERSION FLAVOUR": the module running in boot BOOT_ID, latched when first
#              looked at (or just before a driver upgrade re-arms "installed").
#   persistence  boot id for which `nvidia-smi -pm 1` is in force (lost at reboot, as real).
# GPUs are the NVIDIA display-class devices under /sys/bus/pci/devices (a lab host gets a fake
# tree bind-mounted there; see tests/standins/lab_hardware.py).

NV_STATE=/var/lib/nvidia-standin
NV_PCI_DEVICES=/sys/bus/pci/devices

nv_boot_id() {
    cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown-boot
}

# Print "VERSION FLAVOUR" of the module loaded in this boot; print nothing when none is.
nv_loaded_module() {
    _nv_boot=$(nv_boot_id)
    if [ -r "$NV_STATE/loaded" ]; then
        read -r _nv_lboot _nv_lver _nv_lflav < "$NV_STATE/loaded" || true
        if [ "$_nv_lboot" = "$_nv_boot" ]; then
            echo "$_nv_lver $_nv_lflav"
            return 0
        fi
    fi
    [ -r "$NV_STATE/installed" ] || return 0
    read -r _nv_iver _nv_iflav _nv_iboot < "$NV_STATE/installed" || true
    [ "$_nv_iboot" != "$_nv_boot" ] || return 0
    echo "$_nv_boot $_nv_iver $_nv_iflav" > "$NV_STATE/loaded" 2>/dev/null || true
    echo "$_nv_iver $_nv_iflav"
}

# Known GPUs: PCI device id -> "compute_cap|memory_MiB|power_cap_W|name".
nv_gpu_model() {
    case "$1" in
        0x102d) echo "3.7|11441|149|Tesla K80" ;;
        0x13f2) echo "5.2|8192|150|Tesla M60" ;;
        0x15f7) echo "6.0|12288|250|Tesla P100-PCIE-12GB" ;;
        0x15f8) echo "6.0|16384|250|Tesla P100-PCIE-16GB" ;;
        0x15f9) echo "6.0|16384|300|Tesla P100-SXM2-16GB" ;;
        0x1db1) echo "7.0|16384|300|Tesla V100-SXM2-16GB" ;;
        0x1db4) echo "7.0|16384|250|Tesla V100-PCIE-16GB" ;;
        0x1db5) echo "7.0|32768|300|Tesla V100-SXM2-32GB" ;;
        0x1db6) echo "7.0|32768|250|Tesla V100-PCIE-32GB" ;;
        0x1eb8) echo "7.5|15360|70|Tesla T4" ;;
        0x1eb4) echo "7.5|15360|70|NVIDIA T4G" ;;  # pci.ids 1eb4 and AWS g5g (16 GB, a T4 at 70 W): gpu_compat.yml
        0x20b0) echo "8.0|40960|400|NVIDIA A100-SXM4-40GB" ;;
        0x20b2) echo "8.0|81920|400|NVIDIA A100-SXM4-80GB" ;;
        0x20b5) echo "8.0|81920|300|NVIDIA A100 80GB PCIe" ;;
        0x20f1) echo "8.0|40960|250|NVIDIA A100-PCIE-40GB" ;;
        0x2237) echo "8.6|23028|300|NVIDIA A10G" ;;
        0x26b9) echo "8.9|46068|350|NVIDIA L40S" ;;
        0x27b8) echo "8.9|23034|72|NVIDIA L4" ;;
        0x2321) echo "9.0|95830|400|NVIDIA H100 NVL" ;;
        0x2330) echo "9.0|81559|700|NVIDIA H100 80GB HBM3" ;;
        0x2331) echo "9.0|81559|350|NVIDIA H100 PCIe" ;;
        0x2335) echo "9.0|143771|700|NVIDIA H200" ;;
        0x2901) echo "10.0|183359|1000|NVIDIA B200" ;;
        *) return 1 ;;
    esac
}

# Does driver VERSION with FLAVOUR (open|proprietary) drive a GPU of compute capability CC?
# Open modules need Turing (7.5) or newer; branch 590 dropped Maxwell, Pascal and Volta;
# branches after 470 dropped Kepler.
nv_driver_supports() {
    _nv_cc=$(echo "$3" | tr -d .)
    _nv_branch=${1%%.*}
    if [ "$2" = open ] && [ "$_nv_cc" -lt 75 ]; then return 1; fi
    if [ "$_nv_branch" -ge 590 ] && [ "$_nv_cc" -lt 75 ]; then return 1; fi
    if [ "$_nv_branch" -gt 470 ] && [ "$_nv_cc" -lt 50 ]; then return 1; fi
    return 0
}

# Print one line "BUS_ID|compute_cap|memory_MiB|power_cap_W|name" per NVIDIA GPU on the PCI bus
# (BUS_ID as nvidia-smi writes it: 00000000:00:1E.0), whatever the driver.
nv_pci_gpus() {
    for _nv_dev in "$NV_PCI_DEVICES"/*; do
        [ -r "$_nv_dev/vendor" ] || continue
        [ "$(cat "$_nv_dev/vendor")" = 0x10de ] || continue
        case "$(cat "$_nv_dev/class" 2>/dev/null)" in 0x03*) ;; *) continue ;; esac
        _nv_model=$(nv_gpu_model "$(cat "$_nv_dev/device")") || continue
        _nv_addr=$(basename "$_nv_dev" | tr a-f A-F)
        echo "0000${_nv_addr}|${_nv_model}"
    done
}

# The GPUs the loaded module VERSION FLAVOUR drives, in nv_pci_gpus' format.
nv_driven_gpus() {
    nv_pci_gpus | while IFS='|' read -r _nv_bus _nv_gcc _nv_rest; do
        if nv_driver_supports "$1" "$2" "$_nv_gcc"; then echo "$_nv_bus|$_nv_gcc|$_nv_rest"; fi
    done
}

nv_cuda_version() {
    case "${1%%.*}" in
        580) echo 13.0 ;;
        590) echo 13.1 ;;
        595) echo 13.2 ;;
        *) echo 12.9 ;;
    esac
}
