"""A STAND-IN for AWS's AWS CLI v2 installer zip (awscli-exe-linux-ARCH.zip), served by the lab.

The real zip cannot be fetched here (no network). The stand-in has the real zip's layout and its
installer's observable behaviour, as AWS's installer script shows it (aws/aws-cli, exe/assets/install):
- the zip holds aws/install, aws/dist/aws and aws/dist/aws_completer;
- `install [-i|--install-dir DIR] [-b|--bin-dir DIR] [-u|--update]`, defaults /usr/local/aws-cli
  and /usr/local/bin; the version is the first word of `dist/aws --version` after "aws-cli/";
- files go to INSTALL_DIR/v2/VERSION/dist, with bin/aws -> ../dist/aws; INSTALL_DIR/v2/current
  links to that version; BIN_DIR/aws -> INSTALL_DIR/v2/current/bin/aws (and aws_completer);
- without --update an existing v2/current is refused ("Found preexisting AWS CLI installation:
  ... Please rerun install script with --update flag.", exit 1); the same version already there
  is "Found same AWS CLI version: ... Skipping install." (exit 0);
- it ends with "You can now run: BIN_DIR/aws --version".
The stand-in `aws` answers only `--version` (format of the AWS CLI user guide's examples:
"aws-cli/2.x.y Python/3.x.y Linux/KERNEL exe/ARCH.DISTRO"); anything else fails loudly, since
what AWS would answer is not known here.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

STANDIN_VERSION = "2.22.35"

INSTALL = r"""#!/bin/sh
# STAND-IN for the AWS CLI v2 installer (behaviour of aws/aws-cli exe/assets/install; see tests/standins/awscli.py).
install_root=/usr/local/aws-cli
bin_dir=/usr/local/bin
update=no
while [ $# -gt 0 ]; do
  case "$1" in
    -i|--install-dir) install_root="$2"; shift ;;
    -b|--bin-dir) bin_dir="$2"; shift ;;
    -u|--update) update=yes ;;
    -h|--help) echo "Installs the AWS CLI v2 (stand-in)" >&2; exit 0 ;;
    *) echo "Got an unexpected argument: $1" >&2; exit 1 ;;
  esac
  shift
done
here=$(cd "$(dirname "$0")" > /dev/null 2>&1 && pwd)
version=$("$here/dist/aws" --version | cut -d ' ' -f 1 | cut -d '/' -f 2)
target="$install_root/v2/$version"
current="$install_root/v2/current"
if [ -L "$current" ] && [ "$update" = no ]; then
  echo "Found preexisting AWS CLI installation: $current. Please rerun install script with --update flag." >&2
  exit 1
fi
if [ -d "$target" ]; then
  echo "Found same AWS CLI version: $target. Skipping install."
  exit 0
fi
mkdir -p "$target" || exit 1
{ cp -r "$here/dist" "$target/dist" && mkdir -p "$target/bin" \
  && ln -s ../dist/aws "$target/bin/aws" && ln -s ../dist/aws_completer "$target/bin/aws_completer" \
  && ln -snf "$target" "$current"; } || { rm -rf "$target"; exit 1; }
mkdir -p "$bin_dir"
ln -sf "$current/bin/aws" "$bin_dir/aws"
ln -sf "$current/bin/aws_completer" "$bin_dir/aws_completer"
echo "You can now run: $bin_dir/aws --version"
"""

AWS = r"""#!/bin/sh
# STAND-IN for the AWS CLI v2 executable: only --version is modelled (see tests/standins/awscli.py).
if [ "$1" = --version ]; then
  echo "aws-cli/{version} Python/3.12.6 Linux/$(uname -r) exe/{arch}.debian.12"
  exit 0
fi
echo "aws stand-in (lab): no AWS here; '$*' is not modelled" >&2
exit 255
"""

COMPLETER = "#!/bin/sh\n# STAND-IN for aws_completer: not modelled.\nexit 1\n"


def build_awscli_zip(www: Path, arch: str = "x86_64", version: str = STANDIN_VERSION) -> Path:
    """Write www/awscli-exe-linux-ARCH.zip (the name AWS publishes) and the versioned name beside it."""
    www.mkdir(parents=True, exist_ok=True)
    path = www / f"awscli-exe-linux-{arch}.zip"
    entries = {"aws/install": INSTALL, "aws/dist/aws": AWS.replace("{version}", version).replace("{arch}", arch),
               "aws/dist/aws_completer": COMPLETER}
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16  # unzip keeps the mode bits
            archive.writestr(info, text)
    (www / f"awscli-exe-linux-{arch}-{version}.zip").write_bytes(path.read_bytes())
    return path
