#!/usr/bin/env bash
# Bench check of the offline wheelhouse (not CI: building it takes minutes natively, 30-40 min portable):
#   make wheelhouse [TICKETSMITH_NATIVE=1] && bash bench/wheelhouse_check.sh [WHEELHOUSE]
# With no network, it
#   1. runs install.sh on a copy of the folder less one wheel, which must stop naming that wheel;
#   2. installs the folder into a fresh venv with install.sh;
#   3. triages examples/tickets.jsonl with the installed `ticketsmith triage --input`, one JSON ticket a line.
# No network: where `unshare -n` works (root), each step runs in a network namespace of its own, with no
# interface but a down loopback; elsewhere pip gets PIP_NO_INDEX=1 and no proxy (install.sh ignores pip's
# settings and passes --no-index in any case).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
wheelhouse=$(cd "${1:-$root/dist/wheelhouse}" && pwd)
tickets=$root/examples/tickets.jsonl
[ -f "$wheelhouse/install.sh" ] || { echo "no $wheelhouse/install.sh: run make wheelhouse first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" # never import the checkout's own ticketsmith/

if unshare -n true 2>/dev/null; then
    offline=(unshare -n)
    how="unshare -n: interfaces $(unshare -n sed -n 's/^ *\([a-z0-9]*\):.*/\1/p' /proc/net/dev | tr '\n' ' ')"
else
    offline=(env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u all_proxy PIP_NO_INDEX=1)
    how="PIP_NO_INDEX=1, proxies unset (unshare -n is not permitted here)"
fi
seconds() { date +%s.%N; }
echo "wheelhouse: $wheelhouse ($(tr '\n' ' ' <"$wheelhouse/wheelhouse.txt"))"
echo "offline: $how"

# 1. A missing wheel stops install.sh with a message that names it.
gone=$(cd "$wheelhouse" && ls numpy-*.whl)
cp -al "$wheelhouse" "$work/missing" 2>/dev/null || cp -a "$wheelhouse" "$work/missing"
rm "$work/missing/$gone"
if "${offline[@]}" sh "$work/missing/install.sh" "$work/venv-missing" 2>"$work/missing.err"; then
    echo "FAIL: install.sh succeeded without $gone" >&2
    exit 1
fi
grep -q "no wheel for numpy==" "$work/missing.err" || { echo "FAIL: install.sh did not name $gone:" >&2; cat "$work/missing.err" >&2; exit 1; }
echo "missing wheel: $(cat "$work/missing.err")"

# 2. Install into a fresh venv.
start=$(seconds)
"${offline[@]}" sh "$wheelhouse/install.sh" "$work/venv"
install_s=$(echo "$(seconds) - $start" | bc)

# 3. Triage the sample tickets with the installed package.
start=$(seconds)
"${offline[@]}" "$work/venv/bin/ticketsmith" triage --input "$tickets" >"$work/out.jsonl" 2>"$work/triage.err" ||
    { cat "$work/triage.err" >&2; echo "FAIL: triage" >&2; exit 1; }
triage_s=$(echo "$(seconds) - $start" | bc)
want=$(grep -c . "$tickets")
got=$("$work/venv/bin/python" - "$work/out.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
assert all(isinstance(row, dict) and row.get("category") for row in rows), rows
print(len(rows))
EOF
)
head -n 1 "$work/out.jsonl"
tail -n 1 "$work/triage.err"
[ "$got" = "$want" ] || { echo "FAIL: $got JSON tickets for $want input lines" >&2; exit 1; }
echo "OK: installed in $(printf %.1f "$install_s") s, triaged $got of $want tickets in $(printf %.1f "$triage_s") s," \
    "venv $(du -sm "$work/venv" | cut -f1) MB, wheelhouse $(du -sm "$wheelhouse" | cut -f1) MB"
