# LAB STAND-IN: nvidia-dkms-<branch>'s postinst builds the module with DKMS for the running kernel;
# dkms(8) fails without that kernel's headers ("Your kernel headers for kernel X cannot be found").
if [ "$1" = configure ] && [ ! -d "/lib/modules/$(uname -r)/build" ]; then
    echo "Error! Your kernel headers for kernel $(uname -r) cannot be found at /lib/modules/$(uname -r)/build" >&2
    exit 1
fi
#@include driver-postinst.sh
