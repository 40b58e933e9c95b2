#!/usr/bin/env bash
# Evaluation gate of the model-validation workflow: evaluate a checkpoint (default: the one
# shipped in the package) on the test split of the smoke data set (chips of the sample
# scene, training/smoke/params.yaml) with `python -m training.evaluate`, and fail unless the
# gates that `training.export --ship` requires (training/export.py SHIP_GATES) all pass.
#   .github/scripts/model-gate.sh [CHECKPOINT] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
checkpoint=${1:-sr_engine/checkpoints/hndsr.safetensors}
work=${2:-$(mktemp -d)}
mkdir -p "$work"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$work/mlflow.db}
[ -f "$checkpoint" ] || { echo "model-gate: no checkpoint at $checkpoint" >&2; exit 1; }
[ -d data/landsat8 ] || "$(dirname "$PY")/hndsr-tiles" sample-data --data-dir data
"$PY" - "$work/params.yaml" <<'PY'
import sys, pathlib, yaml
params = yaml.safe_load(pathlib.Path("training/smoke/params.yaml").read_text())
params["data"]["scene_dir"] = str(pathlib.Path("data").resolve())
pathlib.Path(sys.argv[1]).write_text(yaml.safe_dump(params))
PY
"$PY" -m training.prepare --params "$work/params.yaml" --out "$work/prepared"
"$PY" -m training.evaluate --checkpoint "$checkpoint" --prepared "$work/prepared" \
  --params "$work/params.yaml" --out "$work/eval"
"$PY" - "$work/eval/eval.json" <<'PY'
import json, sys
from training.export import SHIP_GATES
gates = json.load(open(sys.argv[1]))["gates"]
for name, ok in gates.items():
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  (required)' if name in SHIP_GATES else ''}")
failed = [g for g in SHIP_GATES if not gates.get(g)]
sys.exit(f"model gate failed: {', '.join(failed)}" if failed else 0)
PY
