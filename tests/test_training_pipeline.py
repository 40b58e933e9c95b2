"""`dvc repro` of the smoke parameter set, end to end, and its MLflow runs read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sr_engine.checkpoint import DEFAULT_CHECKPOINT, file_sha256, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_repro_smoke_runs_end_to_end_and_logs_to_mlflow(tmp_path, sample_scene):
    shipped_before = file_sha256(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.exists() else None
    work = tmp_path / "workspace"
    work.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("training", "sr_engine", "cogs"):
        shutil.copytree(ROOT / name, work / name, ignore=skip)
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "training/smoke/params.yaml").read_text())
    params["data"]["scene_dir"] = str(sample_scene)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": uri,
    }
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=work, env=env, check=True)
    done = subprocess.run(
        [*dvc, "repro"], cwd=work, env=env, capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    exported = work / "artifacts/export/hndsr.safetensors"
    model = load_checkpoint(exported, device="cpu")
    assert model.version.startswith("hndsr-")
    assert model.card["data"]["split_sha256"]
    report = json.loads((work / "artifacts/eval/eval.json").read_text())
    assert {r["label"] for r in report["rows"]} == {"x2", "x4", "x2x3"}

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("hndsr-smoke")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"train_autoencoder", "train_operator", "train_refiner", "evaluate", "export"} <= set(
        by_name
    )
    evaluate = by_name["evaluate"].data.metrics
    x2 = next(r for r in report["rows"] if r["label"] == "x2")
    assert evaluate["fast_psnr_x2"] == pytest.approx(x2["methods"]["fast"]["psnr"])
    assert evaluate["fast_psnr_x2"] > 20.0
    registered = client.search_model_versions("name='hndsr'")  # the DVC register stage
    assert [v.tags["model_version"] for v in registered] == [model.version]
    assert client.get_model_version_by_alias("hndsr", "challenger").version == registered[0].version
    history = client.get_metric_history(by_name["train_operator"].info.run_id, "loss")
    assert len(history) >= 2  # logged per window, not only at the end
    # the scratch workspace never touches the shipped checkpoint
    after = file_sha256(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.exists() else None
    assert after == shipped_before
