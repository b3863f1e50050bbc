#!/usr/bin/env bash
# Fails when the committed web/dist is not what web/build.sh produces from
# web/src (run after web/build.sh). Without Node there is nothing to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
  echo "check-web-dist: node not found; not checked" >&2
  exit 0
fi
changed=$(git status --porcelain -- web/dist)
if [ -n "$changed" ]; then
  echo "web/dist differs from what web/build.sh builds from web/src; run 'make web' and commit web/dist:" >&2
  echo "$changed" >&2
  git --no-pager diff --stat -- web/dist >&2
  exit 1
fi
