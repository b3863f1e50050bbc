#!/usr/bin/env bash
# Runs every fuzz target for a short time (FUZZTIME, default 10s each).
set -euo pipefail
t="${FUZZTIME:-10s}"
# The root module and the chaincode module (its own go.mod).
for mod in . chaincode; do
  for pkg in $(cd "$mod" && go list ./...); do
    dir="$(cd "$mod" && go list -f '{{.Dir}}' "$pkg")"
    for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "fuzz $pkg $f ($t)"
      (cd "$mod" && go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/dev/null)
    done
  done
done
echo "fuzz: all targets ran clean"
