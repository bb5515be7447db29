# The common start of the end-to-end scripts in this folder, sourced right after their
# arguments are read: ROOT (the repository), T (a work directory, removed at exit unless KEEP
# is set), ok/bad with their counters, and default_model (sets M, or fails when it is absent).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then echo "work dir $T (kept)"; else trap 'rm -rf "$T"' EXIT; fi
fails=0 passes=0
ok() { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }
default_model() {
  M=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f "$M" ] || { echo "FAIL $M is missing: run scripts/setup.sh"; exit 1; }
}
