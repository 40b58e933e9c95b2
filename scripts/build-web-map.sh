#!/usr/bin/env bash
# Builds the web map (web_map/, npm registry packages bundled by esbuild; no CDN) and
# copies it into package data at tileserver/static/web_map/, which the server mounts at /.
# The build output is git-ignored: `make serve`, `make test` and .ci/run call this script.
# Skips the npm steps when the sources are older than the last build (set FORCE=1 to rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."
src=web_map
dest=tileserver/static/web_map
if ! command -v npm >/dev/null; then
  echo "build-web-map: npm not found (scripts/system-deps.sh installs it)" >&2
  exit 1
fi
stamp="$dest/.build-stamp"
if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ -d "$src/node_modules" ] \
  && [ -z "$(find "$src/src" "$src/build.mjs" "$src/package.json" "$src/package-lock.json" -newer "$stamp" -print -quit)" ]; then
  echo "build-web-map: $dest is up to date"
  exit 0
fi
(
  cd "$src"
  npm ci --no-audit --no-fund --silent
  npm run build --silent
)
rm -rf "$dest"
mkdir -p "$dest"
cp -R "$src/dist/." "$dest/"
touch "$stamp"
echo "build-web-map: built $dest"
