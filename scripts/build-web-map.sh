#!/usr/bin/env bash
# Builds the web map into tileserver/static (filled in by the web-map work).
set -euo pipefail
if [ -f web_map/package.json ]; then
  cd web_map && npm ci --no-audit --no-fund --silent && npm run build --silent
fi
