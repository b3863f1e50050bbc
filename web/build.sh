#!/usr/bin/env bash
# Builds web/dist from web/src with the packages pinned in package-lock.json.
# The built dist/ is committed, so a machine without Node still builds
# twin-service with the last committed dashboard.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "web: node/npm not found; using the committed web/dist" >&2
  exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
node build.mjs
