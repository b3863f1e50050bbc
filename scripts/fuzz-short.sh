#!/usr/bin/env bash
# Runs every fuzz target for a short time (FUZZTIME, default 10s each). A
# failing target prints its whole output and the path of the crasher that
# `go test -fuzz` wrote under the package's testdata/fuzz/ (rerun it with
# `go test -run 'FuzzName/CRASHER' PKG`).
set -euo pipefail
t="${FUZZTIME:-10s}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
failed=0
# The root module and the chaincode module (its own go.mod).
for mod in . chaincode; do
  for pkg in $(cd "$mod" && go list ./...); do
    dir="$(cd "$mod" && go list -f '{{.Dir}}' "$pkg")"
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "fuzz $pkg $f ($t)"
      if ! (cd "$mod" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg") >"$out" 2>&1; then
        failed=1
        echo "FAIL fuzz $pkg $f; its output:"
        cat "$out"
        crashers=$(find "$dir/testdata/fuzz/$f" -type f -newer "$out" 2>/dev/null || true)
        [ -z "$crashers" ] && crashers=$(grep -o 'testdata/fuzz/[^ ]*' "$out" | sort -u | sed "s#^#$dir/#" || true)
        echo "crasher: ${crashers:-none written (see the output above)}"
      fi
    done
  done
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed (see above)"
  exit 1
fi
echo "fuzz: all targets ran clean"
