# LAB STAND-IN: removing an NVIDIA driver package leaves the running module loaded until reboot.
#@include nvidia-state.sh
case "$1" in
    remove | purge)
        nv_loaded_module >/dev/null
        rm -f "$NV_STATE/installed"
        ;;
esac
