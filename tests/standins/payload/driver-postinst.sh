# LAB STAND-IN: what an NVIDIA driver package's postinst leaves behind: a module that loads at
# the next boot (not now) and Ubuntu's reboot-required flag.
#@include nvidia-state.sh
if [ "$1" = configure ]; then
    mkdir -p "$NV_STATE"
    nv_loaded_module >/dev/null  # latch the module this boot runs before arming the new one
    echo "@DRIVER_VERSION@ @DRIVER_FLAVOUR@ $(nv_boot_id)" > "$NV_STATE/installed"
    mkdir -p /var/run
    echo '*** System restart required ***' > /var/run/reboot-required
    echo "@PACKAGE@" >> /var/run/reboot-required.pkgs
fi
