#!/usr/bin/env bash
# Fuzz the whole OpenAPI of a real server with schemathesis: 0 server errors, 0 timeouts.
# Usage: scripts/schemathesis.sh [extra schemathesis options]   (CI: from .ci/run)
# The server runs on the sample scene (built into $WORK/data if missing) with its own cache.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${SCHEMATHESIS_WORK:-$(mktemp -d)}
export HNDSR_DATA_DIR="$WORK/data" HNDSR_CACHE_DIR="$WORK/cache"
export HNDSR_RENDER_DEADLINE_S=${HNDSR_RENDER_DEADLINE_S:-20}
"$BIN/hndsr-tiles" sample-data --data-dir "$HNDSR_DATA_DIR" >/dev/null
export SCENE="$HNDSR_DATA_DIR/landsat8/LC08_L1TP_224078_20200518_rgb8.tif"
export ITEM="$HNDSR_DATA_DIR/landsat8/LC08_L1TP_224078_20200518_rgb8.json"
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/python" -m uvicorn tileserver.app:create_app --factory --host 127.0.0.1 --port "$PORT" \
    --no-access-log >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    grep -q "Uvicorn running on" "$WORK/server.log" && curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 $SERVER 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.1
done
status=0
"$BIN/schemathesis" --config-file scripts/schemathesis.toml run \
    "http://127.0.0.1:$PORT/openapi.json" --checks not_a_server_error \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-3}" --phases "${SCHEMATHESIS_PHASES:-examples,fuzzing}" \
    --request-timeout 60 --generation-deterministic --no-color "$@" || status=$?
if [ $status -ne 0 ]; then tail -n 60 "$WORK/server.log"; fi
exit $status
