"""The far end of a ship, in POSIX sh and coreutils: a probe before sending, and a receiver that verifies, then renames."""
from __future__ import annotations

import re
from dataclasses import dataclass

from provision.errors import ShipError

# $1 directory, $2 final name, $3 source tag. Stops receivers a cut link left behind, drops partials
# of other source versions, and reports what is there, the free space and the hasher.
PROBE_SCRIPT = r'''
set -u
dir=$1 name=$2 part=".$2.$3.ship-part"
case $dir in "~") dir=$HOME ;; "~/"*) dir=$HOME/${dir#"~/"} ;; esac
mkdir -p -- "$dir" 2>/dev/null || { echo "error=cannot create directory $dir"; exit 3; }
cd -- "$dir" || exit 3
[ -w . ] || { echo "error=directory $dir is not writable by $(id -un)"; exit 3; }
for pidfile in ".$name".*.ship-part.pids; do
  [ -f "$pidfile" ] || continue
  pids=$(cat -- "$pidfile")
  kill $pids 2>/dev/null
  i=0
  while [ $i -lt 100 ]; do
    alive=no
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=yes; done
    [ $alive = no ] && break
    sleep 0.1; i=$((i + 1))
  done
  rm -f -- "$pidfile" "$pidfile.tail"
done
rm -f -- ".$name".*.ship-part.sum
for old in ".$name".*.ship-part; do
  [ -f "$old" ] && [ "$old" != "$part" ] && rm -f -- "$old"
done
[ -f "$name" ] && echo "final=$(stat -c '%s %Y %i' -- "$name")"
[ -f ".$name.ship" ] && echo "sidecar=$(head -n 1 -- ".$name.ship")"
[ -f "$part" ] && echo "part=$(stat -c %s -- "$part")"
if command -v openssl >/dev/null 2>&1; then echo hasher=openssl; else echo hasher=sha256sum; fi
echo "df=$(df -Pk . | tail -n 1)"
echo "dir=$(pwd -P)"
'''

# $1 directory, $2 final name, $3 source tag, $4 size, $5 offset, $6 hasher. Reads size-offset bytes
# then one line with the sender's sha256; renames to the final name only when the sha256 of the
# whole file matches, then writes the sidecar. A fresh file is hashed as it is written (tee). A
# resumed one is hashed from the file itself by a `tail -f` that reads the kept part while the rest
# arrives and follows the new bytes as they land: the kept part is verified at disk speed alongside
# the transfer, not read before it (and what is hashed is what is on disk, not what went by).
RECEIVE_SCRIPT = r'''
set -u
dir=$1 name=$2 part=".$2.$3.ship-part" size=$4 offset=$5
case $dir in "~") dir=$HOME ;; "~/"*) dir=$HOME/${dir#"~/"} ;; esac
cd -- "$dir" || exit 3
if [ "$6" = openssl ]; then hasher="openssl dgst -sha256 -r"; else hasher=sha256sum; fi
have=0
[ -f "$part" ] && have=$(stat -c %s -- "$part")
[ "$have" -ge "$offset" ] || { echo "error=partial file has $have bytes, expected $offset"; exit 4; }
if [ "$offset" -eq 0 ]; then : > "$part" || exit 3
elif [ "$have" -gt "$offset" ]; then truncate -s "$offset" -- "$part" || exit 3; fi
pids="$part.pids"
echo $$ > "$pids"
if [ "$offset" -eq 0 ]; then
  got=$(sh -c 'echo $$ >> "$0"; exec head -c "$1"' "$pids" "$size" |
        sh -c 'echo $$ >> "$0"; exec tee -a -- "$1"' "$pids" "$part" | $hasher)
else
  exec 3<&0
  sh -c 'echo $$ >> "$0"; echo $$ > "$0.tail"; exec tail -c +1 -s 0.2 -f -- "$1"' "$pids" "$part" |
    head -c "$size" | $hasher > "$part.sum" &
  hashing=$!
  sh -c 'echo $$ >> "$0"; exec head -c "$1" >> "$2"' "$pids" $((size - offset)) "$part" <&3
  [ "$(stat -c %s -- "$part")" -eq "$size" ] && wait "$hashing"
  i=0
  while [ ! -s "$pids.tail" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  kill "$(cat -- "$pids.tail")" 2>/dev/null
  wait "$hashing"
  got=$(cat -- "$part.sum")
  rm -f -- "$part.sum" "$pids.tail"
fi
IFS= read -r expected || expected=
rm -f -- "$pids"
got=${got%% *}
have=$(stat -c %s -- "$part")
[ "$have" -eq "$size" ] || { echo "short=$have"; exit 5; }
[ "$got" = "$expected" ] || { rm -f -- "$part"; echo "mismatch=$got"; exit 6; }
mv -f -- "$part" "$name" || exit 3
printf '%s %s\n' "$got" "$(stat -c '%s %Y %i' -- "$name")" > ".$name.ship.tmp" && mv -f -- ".$name.ship.tmp" ".$name.ship"
echo "ok=$got"
'''

DF_LINE = re.compile(r"^(?P<fs>.*?)\s+(?P<blocks>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?P<capacity>\d+)%\s+(?P<mount>.*)$")


@dataclass(frozen=True)
class FileState:
    """A file at the far end as `stat -c '%s %Y %i'` sees it."""

    size: int
    mtime: int
    inode: int


@dataclass(frozen=True)
class Probe:
    """What the far end holds for one file before anything is sent."""

    directory: str
    final: FileState | None
    sidecar_sha256: str | None
    sidecar_state: FileState | None
    partial: int | None
    hasher: str
    free_bytes: int

    def holds(self, sha256: str) -> bool:
        """Whether the final file is the one the sidecar describes, with this sha256."""
        return (self.final is not None and self.final == self.sidecar_state
                and self.sidecar_sha256 == sha256)

    def may_hold(self, size: int) -> bool:
        """Whether holds() could be true for a source of `size` bytes (worth hashing the source)."""
        return self.final is not None and self.final == self.sidecar_state and self.final.size == size


def parse_probe(output: str, label: str) -> Probe:
    """The probe's key=value lines, read into a Probe; ShipError naming the host when they are incomplete."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    if "error" in values:
        raise ShipError(f"{label}: {values['error']}")
    if "dir" not in values or "df" not in values:
        raise ShipError(f"{label}: the probe of the destination printed no answer: {output.strip()[-300:]!r}")
    df = DF_LINE.match(values["df"].strip())
    if not df:
        raise ShipError(f"{label}: cannot read the free space from df: {values['df']!r}")
    sidecar_sha, sidecar_state = None, None
    sidecar = values.get("sidecar", "").split()
    if len(sidecar) == 4 and re.fullmatch(r"[0-9a-f]{64}", sidecar[0]) and all(f.isdigit() for f in sidecar[1:]):
        sidecar_sha, sidecar_state = sidecar[0], FileState(*map(int, sidecar[1:]))
    return Probe(
        directory=values["dir"],
        final=_state(values.get("final")),
        sidecar_sha256=sidecar_sha,
        sidecar_state=sidecar_state,
        partial=int(values["part"]) if values.get("part", "").isdigit() else None,
        hasher=values.get("hasher", "sha256sum"),
        free_bytes=int(df["avail"]) * 1024,
    )


def _state(text: str | None) -> FileState | None:
    fields = (text or "").split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    return FileState(*map(int, fields))


def receiver_outcome(output: str) -> dict[str, str]:
    """The receiver's key=value lines (ok=, short=, mismatch=, error=)."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
