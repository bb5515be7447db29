#!/usr/bin/env bash
# The reference configs are the binary's own output: configs/reference/<command>.yaml must equal
# `sllm <command> --print-config` (every key, default and help, from the option tables), must read
# back unchanged through --config, and the example configs must load and validate.
#   reference_configs.sh BIN            check
#   reference_configs.sh BIN --update   rewrite configs/reference/*.yaml from BIN
set -u
BIN=$1
UPDATE=${2:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REF=$ROOT/configs/reference
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; }

# The subcommands, as the binary lists them in --help.
mapfile -t CMDS < <("$BIN" --help | awk 'tolower($0) ~ /^subcommands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ ${#CMDS[@]} -gt 0 ] || { echo "FAIL no subcommands in '$BIN --help'"; exit 1; }

if [ "$UPDATE" = "--update" ]; then
  mkdir -p "$REF"
  rm -f "$REF"/*.yaml
  for c in "${CMDS[@]}"; do "$BIN" "$c" --print-config > "$REF/$c.yaml" || exit 1; done
  echo "wrote ${#CMDS[@]} files to $REF"
  exit 0
fi

for c in "${CMDS[@]}"; do
  if ! "$BIN" "$c" --print-config > "$T/$c.yaml" 2>"$T/err"; then
    fail "$c --print-config"; cat "$T/err"; continue
  fi
  if diff -u "$REF/$c.yaml" "$T/$c.yaml" > "$T/diff"; then
    ok "configs/reference/$c.yaml matches '$c --print-config'"
  else
    fail "configs/reference/$c.yaml drifted from the option table (regenerate with: $0 BIN --update)"
    head -40 "$T/diff"
  fi
  # Read back through --config: the same text again.
  if "$BIN" "$c" --config "$REF/$c.yaml" --print-config > "$T/back.yaml" 2>"$T/err" &&
    diff -q "$T/$c.yaml" "$T/back.yaml" > /dev/null; then
    ok "configs/reference/$c.yaml reads back unchanged"
  else
    fail "configs/reference/$c.yaml does not read back unchanged"; cat "$T/err"
  fi
done
# No reference file for a command that does not exist.
for f in "$REF"/*.yaml; do
  c=$(basename "$f" .yaml)
  printf '%s\n' "${CMDS[@]}" | grep -qx "$c" || fail "$f: no command '$c'"
done
if cmp -s "$ROOT/configs/generate.yaml" "$REF/generate.yaml"; then
  ok "configs/generate.yaml is the generate reference"
else
  fail "configs/generate.yaml differs from configs/reference/generate.yaml"
fi

# The example configs load and validate against their command's options.
check_example() {  # command, file
  if "$BIN" "$1" --config "$ROOT/$2" --print-config > /dev/null 2>"$T/err"; then
    ok "$2 validates as '$1'"
  else
    fail "$2 does not validate as '$1'"; cat "$T/err"
  fi
}
check_example distill configs/smollm2-135m/distill-office.yaml
check_example distill configs/smollm2-135m/distill-office-ce.yaml
check_example eval configs/smollm2-135m/eval-office.yaml
check_example merge configs/smollm2-135m/merge-office.yaml
check_example qlora-train configs/smollm2-135m/qlora-office.yaml
check_example sft configs/smollm2-135m/sft-office.yaml
for f in "$ROOT"/configs/smollm2-135m/*.yaml; do
  grep -q "$(basename "$f")" "$0" || fail "$f is not checked here: add it to check_example"
done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
