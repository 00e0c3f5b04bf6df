#!/usr/bin/env bash
# Makes (or reuses) a Python virtual environment with pycapnp, for the interop tests of
# crates/captp (crates/captp/tests/pycapnp_interop.rs runs this script), and prints the path of
# its python interpreter as the last line of standard output; everything else goes to standard
# error.
#
# The environment lives in target/pycapnp-venv (override with PYCAPNP_VENV). The script installs
# what it needs: Debian's python3-venv when `python3 -m venv` does not work (as root, like
# scripts/regen-capnp.sh), then the pinned pycapnp from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

PYCAPNP_VERSION="2.2.4"
venv="${PYCAPNP_VENV:-$PWD/target/pycapnp-venv}"
python="$venv/bin/python"

ready() {
  [ -x "$python" ] && "$python" -c "import capnp, sys; sys.exit(capnp.__version__ != '$PYCAPNP_VERSION')" 2>/dev/null
}

if ready; then
  echo "$python"
  exit 0
fi

# One builder at a time (the tests run in parallel); whoever waited finds the first one's work.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ready; then
  echo "$python"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "pycapnp-env: installing python3-venv" >&2
  apt-get update >&2
  apt-get install -y python3-venv >&2
fi

# Built in a scratch directory and moved into place, so that an interrupted run never leaves a
# half-made environment behind for the next one to trust.
scratch="$(mktemp -d "$(dirname "$venv")/.pycapnp-venv.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
echo "pycapnp-env: making $venv with pycapnp $PYCAPNP_VERSION" >&2
python3 -m venv "$scratch/venv" >&2
"$scratch/venv/bin/python" -m pip install --disable-pip-version-check --quiet "pycapnp==$PYCAPNP_VERSION" >&2
rm -rf "$venv"
mv "$scratch/venv" "$venv"
if ! ready; then
  echo "pycapnp-env: $python cannot import pycapnp $PYCAPNP_VERSION" >&2
  exit 1
fi
echo "$python"
