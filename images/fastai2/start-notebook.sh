#!/bin/sh
# Serve JupyterLab on a chosen port. The password's hash comes from a file (a secret), never argv:
# JUPYTER_PASSWORD_HASH_FILE (default ~/.jupyter/password.hash, made with jupyter_server.auth.passwd).
# The port: --port, else $NOTEBOOK_PORT (set by invoke notebook), else 9999.
set -eu
port=${NOTEBOOK_PORT:-9999}
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    *) echo "start-notebook: unknown option $1" >&2; exit 2 ;;
  esac
done
hash_file=${JUPYTER_PASSWORD_HASH_FILE:-$HOME/.jupyter/password.hash}
if [ ! -r "$hash_file" ]; then
  echo "start-notebook: no password hash in $hash_file; make one with:" >&2
  echo "  python -c 'from jupyter_server.auth import passwd; print(passwd())' > $hash_file" >&2
  exit 1
fi
config=$(mktemp)
printf 'c.PasswordIdentityProvider.hashed_password = %s\n' "'$(cat "$hash_file")'" > "$config"
exec jupyter lab --no-browser --ip=127.0.0.1 --port="$port" --config="$config"
