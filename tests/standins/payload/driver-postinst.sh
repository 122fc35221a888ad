# LAB STAND-IN: what installing an NVIDIA kernel module package leaves behind: a module that loads
# at the next boot (not now). No /var/run/reboot-required: neither Ubuntu's nvidia-dkms /
# linux-modules-nvidia postinsts nor DKMS write it (that file comes from update-notifier's
# kernel postinst hook, /usr/share/update-notifier/notify-reboot-required, on kernel updates).
#@include nvidia-state.sh
if [ "$1" = configure ]; then
    mkdir -p "$NV_STATE"
    nv_loaded_module >/dev/null  # latch the module this boot runs before arming the new one
    echo "@DRIVER_VERSION@ @DRIVER_FLAVOUR@ $(nv_boot_id)" > "$NV_STATE/installed"
    # The unit that plays the kernel loading it at boot (a real module needs no unit).
    mkdir -p /etc/systemd/system/sysinit.target.wants
    ln -sf /lib/systemd/system/lab-standin-nvidia-module.service \
        /etc/systemd/system/sysinit.target.wants/lab-standin-nvidia-module.service
fi
