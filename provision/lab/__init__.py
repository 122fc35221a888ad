"""The built-in lab: real Debian hosts in network namespaces on this machine."""
