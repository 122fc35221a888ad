"""Moving big files between hosts over OpenSSH: command lines, far-end scripts, sources, and their errors."""
