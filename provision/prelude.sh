# provision prelude: the status protocol and the helpers every compiled step may call.
# Status lines: "@@prov ID STATUS [DETAIL]"; failed steps add "@@log ID LINE" lines.
umask 022
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PROV_STATE=${PROVISION_STATE_DIR:-/var/lib/provision}

prov_say() { printf '@@prov %s\n' "$*"; }

prov_log_tail() {  # ID FILE: the last lines of a step's output, for the controller
  tail -n 30 "$2" | while IFS= read -r prov_line; do printf '@@log %s %s\n' "$1" "$prov_line"; done
}

prov_start() {
  prov_run=$(mktemp -d "${TMPDIR:-/tmp}/provision.XXXXXX") || { prov_say 0 failed 1 cannot create a temporary directory; exit 1; }
  trap 'rm -rf "$prov_run"' EXIT
  if [ "$PROV_CHECK" = 0 ]; then mkdir -p "$PROV_STATE/handlers" || exit 1; fi
}

prov_notify() {  # HANDLER: remembered on disk, so a reboot, reconnect or failure loses no handler
  if [ "$PROV_CHECK" = 1 ]; then eval "prov_h_$1=1"; else : > "$PROV_STATE/handlers/$1"; fi
}

prov_notified() {  # HANDLER
  [ -e "$PROV_STATE/handlers/$1" ] || eval "[ \"\${prov_h_$1:-0}\" = 1 ]"
}

prov_verify() {  # ID: a verification: its check is the test, its last output line the detail
  if [ "$PROV_CHECK" = 1 ]; then prov_say "$1 skipped not run in check mode"; return 0; fi
  ( "s$1_check" ) > "$prov_run/out" 2>&1 < /dev/null
  prov_rc=$?
  if [ "$prov_rc" = 0 ]; then prov_say "$1 ok $(tail -n 1 "$prov_run/out" | cut -c1-200)"; return 0; fi
  prov_say "$1 failed $prov_rc"; prov_log_tail "$1" "$prov_run/out"; exit 1
}

prov_step() {  # ID CONTROL: check; then (unless check mode) apply, check again, report.
  if [ "$2" = verify ]; then prov_verify "$1"; return $?; fi
  ( "s$1_check" ) > "$prov_run/out" 2>&1 < /dev/null
  prov_rc=$?
  if [ "$prov_rc" = 0 ]; then prov_say "$1 ok"; return 0; fi
  if [ "$prov_rc" = 77 ]; then prov_say "$1 skipped $(tail -n 1 "$prov_run/out")"; return 0; fi
  if [ "$PROV_DIFF" = 1 ] && [ "$2" = file ]; then "s$1_current"; fi
  if [ "$PROV_CHECK" = 1 ]; then prov_say "$1 would-change"; return 10; fi
  if [ "$2" = reboot ]; then prov_say "$1 reboot"; exit 0; fi
  ( "s$1_apply" ) > "$prov_run/out" 2>&1 < /dev/null
  prov_rc=$?
  if [ "$prov_rc" != 0 ]; then
    prov_say "$1 failed $prov_rc"; prov_log_tail "$1" "$prov_run/out"; exit 1
  fi
  if [ "$2" != norecheck ] && ! ( "s$1_check" ) > "$prov_run/out" 2>&1 < /dev/null; then
    prov_say "$1 failed 0 applied, but its check still fails"; prov_log_tail "$1" "$prov_run/out"; exit 1
  fi
  prov_say "$1 changed"
  # Over SSH the controller reconnects so the new login has the group; user-data runs as root.
  if [ "$2" = reconnect ] && [ "$PROV_USERDATA" = 0 ]; then exit 0; fi
  return 10
}

prov_handler() {  # ID HANDLER: run a notified handler once, then forget it
  if [ "$PROV_CHECK" = 1 ]; then prov_say "$1 would-change"; return 0; fi
  ( "s$1_apply" ) > "$prov_run/out" 2>&1 < /dev/null
  prov_rc=$?
  if [ "$prov_rc" = 77 ]; then rm -f "$PROV_STATE/handlers/$2"; prov_say "$1 skipped $(tail -n 1 "$prov_run/out")"; return 0; fi
  if [ "$prov_rc" != 0 ]; then
    prov_say "$1 failed $prov_rc"; prov_log_tail "$1" "$prov_run/out"; exit 1
  fi
  rm -f "$PROV_STATE/handlers/$2"
  prov_say "$1 changed"
}

prov_pkg_missing() {  # NAME[=VERSION]...: print each one not installed (at that version); one dpkg-query
  prov_names=
  for prov_spec in "$@"; do prov_names="$prov_names ${prov_spec%%=*}"; done
  # shellcheck disable=SC2086
  dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' $prov_names 2>/dev/null \
  | awk -v specs="$*" '
    # Status-Abbrev: wanted (i, or h when held), then status i = installed
    substr($0, 2, 1) == "i" { have[$2] = $3 }
    END {
      n = split(specs, list, " ")
      for (i = 1; i <= n; i++) {
        name = list[i]; want = ""
        if (index(name, "=")) { want = substr(name, index(name, "=") + 1); name = substr(name, 1, index(name, "=") - 1) }
        if (!(name in have) || (want != "" && have[name] != want)) print list[i]
      }
    }'
}

prov_pkg_present() {  # NAME...: print each one installed, even partly
  for prov_name in "$@"; do
    case $(dpkg-query -W -f='${db:Status-Abbrev}' "$prov_name" 2>/dev/null) in
      i*|h*|t*|"rc"*) echo "$prov_name" ;;
    esac
  done
}

prov_pkg_unheld() {  # NAME...: print each one not on hold
  prov_held=$(apt-mark showhold)
  for prov_name in "$@"; do
    printf '%s\n' "$prov_held" | grep -qxF -- "$prov_name" || echo "$prov_name"
  done
}

prov_stale_sources() {  # URI OWN_FILE [LEGACY_FILE...]: other apt sources for URI, and legacy files
  prov_uri=$1; prov_own=$2; shift 2
  for prov_f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ ! -f "$prov_f" ] || [ "$prov_f" = "$prov_own" ]; then continue; fi
    PROV_URI=$prov_uri awk 'index($0, ENVIRON["PROV_URI"]) && $0 !~ /^[ \t]*#/ { found = 1 } END { exit !found }' "$prov_f" \
      && echo "$prov_f"
  done
  for prov_f in "$@"; do [ -e "$prov_f" ] && echo "$prov_f"; done
  return 0
}

prov_apt() {  # apt-get, non-interactive, waiting for the dpkg lock rather than failing on it
  apt-get -y -q -o DPkg::Lock::Timeout="$PROV_APT_LOCK_TIMEOUT" -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

prov_apt_refresh() {  # MAX_AGE NAME[=VERSION]...: update the lists only when they cannot serve these
  prov_age=$1; shift
  prov_stamp="$PROV_STATE/apt-updated"
  [ -e "$prov_stamp" ] || prov_stamp=/var/lib/apt/lists
  prov_need=0
  [ -e "$PROV_STATE/apt-sources-changed" ] && prov_need=1
  [ -n "$(find "$prov_stamp" -maxdepth 0 -mmin "+$((prov_age / 60))" 2>/dev/null)" ] && prov_need=1
  if [ "$prov_need" = 0 ]; then
    for prov_spec in "$@"; do
      apt-cache show --no-all-versions "$prov_spec" > /dev/null 2>&1 || { prov_need=1; break; }
    done
  fi
  [ "$prov_need" = 1 ] || return 0
  if ! prov_apt update; then
    # A broken source elsewhere (an old guide's docker.list, say) must not stop us when the
    # lists we need did update: go on if every package asked for has a candidate now.
    for prov_spec in "$@"; do
      apt-cache show --no-all-versions "$prov_spec" > /dev/null 2>&1 || return 1
    done
    echo "provision: apt-get update reported errors (above); the packages needed here are available"
    return 0
  fi
  mkdir -p "$PROV_STATE" && : > "$PROV_STATE/apt-updated" && rm -f "$PROV_STATE/apt-sources-changed"
}

prov_dpkg_interrupted() {  # true when a dpkg run was cut short (apt then refuses: "dpkg was interrupted")
  command -v dpkg > /dev/null || return 1
  prov_admin=${DPKG_ADMINDIR:-/var/lib/dpkg}  # dpkg's own variable for its database (dpkg(1), ENVIRONMENT)
  for prov_f in "$prov_admin"/updates/* "$prov_admin"/updates/.[!.]*; do [ -e "$prov_f" ] && return 0; done
  # The states dpkg --audit reports that dpkg --configure -a or apt-get -f install can finish (the
  # Status field: want, then ok or reinstreq, then the state; deb-status(5)): one grep of the status
  # file, where dpkg --audit takes 8 ms of every run on a small host.
  grep -Eq '^Status: [a-z]+ (reinstreq [a-z-]+|ok (half-installed|unpacked|half-configured|triggers-awaited|triggers-pending))$' \
    "$prov_admin/status" 2>/dev/null
}

prov_dpkg_repair() {  # finish the cut-short run (dpkg --configure -a, waiting for the lock), then apt's fix-up
  prov_waited=0
  until dpkg --force-confdef --force-confold --configure -a > "$prov_run/dpkg" 2>&1; do
    if grep -q 'lock' "$prov_run/dpkg" && [ "$prov_waited" -lt "$PROV_APT_LOCK_TIMEOUT" ]; then
      sleep 1; prov_waited=$((prov_waited + 1)); continue
    fi
    cat "$prov_run/dpkg"
    echo "provision: dpkg --configure -a failed: $(grep -m1 -i 'error' "$prov_run/dpkg" || grep . "$prov_run/dpkg" | tail -n 1)"; return 1
  done
  cat "$prov_run/dpkg"
  prov_apt install -f > "$prov_run/dpkg" 2>&1 \
    || { cat "$prov_run/dpkg"; echo "provision: apt-get -f install failed: $(grep -m1 '^E:' "$prov_run/dpkg" || grep . "$prov_run/dpkg" | tail -n 1)"; return 1; }
  cat "$prov_run/dpkg"
}
