"""The six tasks of bench/equivalents/provision_role (with role base's two apt settings) as a pyinfra deploy.

Contents are byte for byte what provision writes, so every tool's re-run after the others is a no-op.
The proxy URL comes from the inventory's `base_apt_proxy` data, as it does for provision and ansible.
"""
from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files

files.put(
    name="Make apt wait for the dpkg lock instead of failing",
    src=StringIO('// Written by provision (role base): wait for the dpkg lock rather than fail.\n'
                 'DPkg::Lock::Timeout "600";\n'),
    dest="/etc/apt/apt.conf.d/80provision-lock-timeout",
    user="root", group="root", mode="644",
)

files.put(
    name="Route apt through the proxy",
    src=StringIO("// Written by provision (role base): apt's HTTP proxy.\n"
                 f'Acquire::http::Proxy "{host.data.base_apt_proxy}";\n'),
    dest="/etc/apt/apt.conf.d/81provision-proxy",
    user="root", group="root", mode="644",
)

apt.packages(
    name="Install the bench packages",
    packages=["tmux", "htop", "git"],
    no_recommends=True,
)

files.directory(
    name="A directory for the bench files",
    path="/opt/bench",
    user="root", group="root", mode="755",
)

files.line(
    name="Keep idle SSH sessions alive",
    path="/etc/ssh/sshd_config",
    line=r"^#?ClientAliveInterval.*$",
    replace="ClientAliveInterval 120",
)

files.put(
    name="The bench settings file",
    src=StringIO("# Written by the no-op benchmark (bench/noop.py).\nmode = noop\nhosts = 9\n"),
    dest="/opt/bench/settings.conf",
    user="root", group="root", mode="644",
)
