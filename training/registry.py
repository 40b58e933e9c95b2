"""The MLflow Model Registry of HNDSR: register exported checkpoints, gate promotions, roll back.

Each registered version of model ``hndsr`` holds, as artifacts under ``model/``, the weights,
the model card (with a semantic version), the UC Merced evaluation (``eval.json``) and the
tile-path evaluation (``eval_tiles.json``), and as tags the card version, the semantic
version, the weights and data hashes and both gate verdicts. Aliases: ``champion`` (what
``models:/hndsr@champion`` serves) and ``challenger`` (the newest registration).

Promotion runs the gate (``promotion_gate``): the candidate passes the UC Merced ship gates
and the tile-path gates, and beats the champion's mean ``fast`` PSNR over the tile-path rows
both evaluated by at least ``margin`` dB. Every alias change is appended to the registered
model's ``alias_log`` tag (who, when, why), which ``rollback`` reads.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from training.export import SHIP_GATES
from training.tracking import setup

MODEL_NAME = "hndsr"
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "hndsr-registry"
ARTIFACT_DIR = "model"
WEIGHTS, CARD, EVAL, EVAL_TILES = "hndsr.safetensors", "hndsr.json", "eval.json", "eval_tiles.json"
ALIAS_LOG = "alias_log"
ALIAS_LOG_KEEP = 20
"""Alias events kept in the tag (a tag value holds at most 5,000 characters)."""
REASON_CHARS = 100
"""Longest reason kept in the log (the version's own tag keeps it whole)."""
ARCHITECTURE_KEYS = ("feats", "blocks", "hidden", "harmonics", "latent", "ae_width")
"""Config fields whose change makes a new major version (another network shape)."""


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (missing alias, unknown version, bad input)."""


@dataclass(frozen=True)
class GateRow:
    """One line of the promotion gate: ``passed`` when ``value`` meets ``threshold``."""

    name: str
    value: float
    threshold: float
    passed: bool
    note: str = ""


def registry_client() -> MlflowClient:
    """A client of the project's tracking/registry store (``MLFLOW_TRACKING_URI``)."""
    return MlflowClient(tracking_uri=setup(EXPERIMENT))


# -- registration ------------------------------------------------------------------------------
def semantic_version(card: dict, previous: dict | None) -> str:
    """Next ``major.minor.patch`` after the newest registered card ``previous``.

    Major: another architecture (``ARCHITECTURE_KEYS``); minor: other data (split hash) or
    other weights; patch: the same weights registered again (a new evaluation).
    """
    if previous is None or "semver" not in previous:
        return "1.0.0"
    major, minor, patch = (int(p) for p in previous["semver"].split("."))
    shape = [card["config"].get(k) for k in ARCHITECTURE_KEYS]
    if shape != [previous["config"].get(k) for k in ARCHITECTURE_KEYS]:
        return f"{major + 1}.0.0"
    if card["weights_sha256"] != previous["weights_sha256"]:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _tile_fast_psnr(eval_tiles: dict) -> dict[tuple, float]:
    """``(scene, degradation, scale) -> psnr`` of the ``fast`` rows of a tile-path evaluation."""
    return {
        (r["scene"], r["degradation"], int(r["scale"])): float(r["psnr"])
        for r in eval_tiles.get("rows", [])
        if r["method"] == "fast"
    }


def register(
    export_dir: Path,
    *,
    eval_json: Path | None = None,
    eval_tiles: Path | None = None,
    reason: str = "registered",
    by: str | None = None,
    client: MlflowClient | None = None,
) -> ModelVersion:
    """Register ``export_dir``'s checkpoint (+ evaluations) as a new version; alias challenger.

    ``eval_json`` defaults to the card's own evaluation; both evaluations must be of these
    weights (their recorded SHA-256 or version is checked), else ``RegistryError``.
    """
    client = client or registry_client()
    weights = export_dir / WEIGHTS
    card = json.loads((export_dir / CARD).read_text())
    uc_merced = _load_eval(eval_json, card)
    tiles = json.loads(eval_tiles.read_text()) if eval_tiles else None
    if tiles is not None and tiles.get("model_version") not in (None, card["version"]):
        raise RegistryError(
            f"{eval_tiles} evaluates {tiles.get('model_version')}, not {card['version']}"
        )
    previous = _newest_card(client)
    card = {**card, "semver": semantic_version(card, previous)}
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / ARTIFACT_DIR
        staged.mkdir()
        shutil.copyfile(weights, staged / WEIGHTS)
        (staged / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        (staged / EVAL).write_text(json.dumps(uc_merced, indent=2) + "\n")
        if tiles is not None:
            (staged / EVAL_TILES).write_text(json.dumps(tiles, indent=2) + "\n")
            for extra in ("eval_tiles.md", "eval_tiles.png"):
                if (eval_tiles.parent / extra).is_file():  # type: ignore[union-attr]
                    shutil.copyfile(eval_tiles.parent / extra, staged / extra)  # type: ignore[union-attr]
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        )
        run = client.create_run(experiment_id, run_name=f"register {card['semver']}")
        client.log_artifacts(run.info.run_id, str(staged), ARTIFACT_DIR)
        client.set_terminated(run.info.run_id)
    try:
        client.create_registered_model(MODEL_NAME, description="HNDSR super-resolution model")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = _version_tags(card, uc_merced, tiles)
    version = client.create_model_version(
        MODEL_NAME, f"{run.info.artifact_uri}/{ARTIFACT_DIR}", run.info.run_id, tags=tags
    )
    _set_alias(client, CHALLENGER, version.version, reason, by)
    return version


def _load_eval(eval_json: Path | None, card: dict) -> dict:
    if eval_json is None:
        return {"version": card["version"], **card.get("evaluation", {})}
    report = json.loads(eval_json.read_text())
    if report.get("checkpoint_sha256") not in (None, card["weights_sha256"]):
        raise RegistryError(f"{eval_json} evaluates other weights than {card['version']}")
    return report


def _version_tags(card: dict, uc_merced: dict, tiles: dict | None) -> dict[str, str]:
    gates = uc_merced.get("gates", {})
    tags = {
        "model_version": card["version"],
        "semver": card["semver"],
        "weights_sha256": card["weights_sha256"],
        "parameters": str(card.get("parameters", "")),
        "uc_merced.ship_gates_passed": str(all(gates.get(g) for g in SHIP_GATES)).lower(),
        "tile_eval": "present" if tiles is not None else "missing",
    }
    data = card.get("data", {})
    if "split_sha256" in data:
        tags["data.split_sha256"] = data["split_sha256"]
    for name, pack in data.get("packs", {}).items():
        tags[f"data.{name}_sha256"] = pack["sha256"]
    if tiles is not None:
        tags["tile_eval.passed"] = str(bool(tiles.get("passed"))).lower()
        psnr = list(_tile_fast_psnr(tiles).values())
        if psnr:
            tags["tile_eval.fast_psnr_mean"] = f"{sum(psnr) / len(psnr):.4f}"
    return tags


def _newest_card(client: MlflowClient) -> dict | None:
    versions = _versions(client)
    return read_artifact(client, versions[-1], CARD) if versions else None


# -- reading -----------------------------------------------------------------------------------
def _versions(client: MlflowClient) -> list[ModelVersion]:
    found = client.search_model_versions(f"name='{MODEL_NAME}'")
    return sorted(found, key=lambda v: int(v.version))


def list_versions(client: MlflowClient | None = None) -> list[ModelVersion]:
    """Every registered version of ``hndsr``, oldest first."""
    return _versions(client or registry_client())


def aliases(client: MlflowClient) -> dict[str, str]:
    """Alias -> version number of ``hndsr`` (empty when nothing is registered)."""
    try:
        return {k: str(v) for k, v in client.get_registered_model(MODEL_NAME).aliases.items()}
    except MlflowException:
        return {}


def get_version(client: MlflowClient, ref: str) -> ModelVersion:
    """A version by number (``"3"``) or alias (``"champion"``); ``RegistryError`` if none."""
    try:
        if ref.isdigit():
            return client.get_model_version(MODEL_NAME, ref)
        return client.get_model_version_by_alias(MODEL_NAME, ref)
    except MlflowException as exc:
        raise RegistryError(f"no version {ref!r} of model {MODEL_NAME!r}") from exc


def read_artifact(client: MlflowClient, version: ModelVersion, name: str) -> dict | None:
    """A JSON artifact of a version (``None`` when it has none by that name)."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{version.source}/{name}",
                dst_path=scratch,
                tracking_uri=client.tracking_uri,
            )
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def alias_log(client: MlflowClient) -> list[dict]:
    """The recorded alias changes, oldest first."""
    try:
        tags = client.get_registered_model(MODEL_NAME).tags
    except MlflowException:
        return []
    return json.loads(tags.get(ALIAS_LOG, "[]"))


# -- promotion ---------------------------------------------------------------------------------
def promotion_gate(
    candidate: dict, candidate_tiles: dict | None, champion_tiles: dict | None, margin: float
) -> list[GateRow]:
    """The gate table: ship gates of both evaluations, then the champion comparison.

    ``candidate`` is the UC Merced report (``eval.json``); ``champion_tiles`` is ``None``
    when there is no champion yet (the comparison then passes).
    """
    rows = []
    gates = candidate.get("gates", {})
    for name in SHIP_GATES:
        ok = bool(gates.get(name))
        rows.append(GateRow(f"uc_merced.{name}", float(ok), 1.0, ok))
    if candidate_tiles is None:
        rows.append(GateRow("tile_eval.present", 0.0, 1.0, False, "no eval_tiles.json"))
        return rows
    for gate in candidate_tiles.get("gates", []):
        rows.append(
            GateRow(
                f"tiles.{gate['name']}",
                float(gate["value"]),
                float(gate["threshold"]),
                bool(gate["passed"]),
            )
        )
    if champion_tiles is None:
        rows.append(GateRow("beats_champion.fast_psnr_db", 0.0, margin, True, "no champion"))
        return rows
    ours, theirs = _tile_fast_psnr(candidate_tiles), _tile_fast_psnr(champion_tiles)
    shared = sorted(set(ours) & set(theirs))
    if not shared:
        rows.append(
            GateRow("beats_champion.fast_psnr_db", 0.0, margin, False, "no shared tile rows")
        )
        return rows
    gain = sum(ours[k] - theirs[k] for k in shared) / len(shared)
    rows.append(
        GateRow(
            "beats_champion.fast_psnr_db",
            gain,
            margin,
            gain >= margin,
            f"mean over {len(shared)} shared rows",
        )
    )
    return rows


@dataclass(frozen=True)
class Promotion:
    """Result of ``promote``: the gate table and whether the champion alias moved."""

    version: str
    previous: str | None
    gate: list[GateRow]
    promoted: bool


def promote(
    ref: str,
    *,
    margin: float = 0.0,
    reason: str,
    by: str | None = None,
    client: MlflowClient | None = None,
) -> Promotion:
    """Gate version ``ref`` (number or alias) against the champion; move ``champion`` on a pass."""
    client = client or registry_client()
    candidate = get_version(client, ref)
    current = aliases(client).get(CHAMPION)
    champion_tiles = None
    if current is not None:
        champion_tiles = read_artifact(client, get_version(client, current), EVAL_TILES)
        if champion_tiles is None:
            champion_tiles = {"rows": []}  # a champion without a tile evaluation cannot be beaten
    report = read_artifact(client, candidate, EVAL) or {}
    gate = promotion_gate(
        report, read_artifact(client, candidate, EVAL_TILES), champion_tiles, margin
    )
    promoted = all(row.passed for row in gate)
    if promoted:
        _set_alias(client, CHAMPION, candidate.version, reason, by)
    return Promotion(str(candidate.version), current, gate, promoted)


def rollback(*, reason: str, by: str | None = None, client: MlflowClient | None = None) -> str:
    """Point ``champion`` back at the champion before the current one; returns that version."""
    client = client or registry_client()
    stack: list[str] = []
    for event in alias_log(client):
        if event["alias"] != CHAMPION:
            continue
        if event["action"] == "rollback":
            stack.pop()
        else:
            stack.append(event["version"])
    if len(stack) < 2:
        raise RegistryError("no previous champion to roll back to")
    previous = stack[-2]
    _set_alias(client, CHAMPION, previous, reason, by, action="rollback")
    return previous


def _set_alias(
    client: MlflowClient,
    alias: str,
    version: str,
    reason: str,
    by: str | None,
    action: str = "set",
) -> None:
    """Move ``alias`` to ``version`` and record who/when/why on the version and in the log."""
    event = {
        "alias": alias,
        "version": str(version),
        "action": action,
        "by": by or getpass.getuser(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    client.set_registered_model_alias(MODEL_NAME, alias, str(version))
    for key in ("by", "at", "reason"):
        client.set_model_version_tag(MODEL_NAME, str(version), f"{alias}.{key}", event[key])
    log = [*alias_log(client), {**event, "reason": reason[:REASON_CHARS]}][-ALIAS_LOG_KEEP:]
    client.set_registered_model_tag(MODEL_NAME, ALIAS_LOG, json.dumps(log))


def main() -> None:
    """``python -m training.registry EXPORT_DIR [--eval ...] [--eval-tiles ...]`` (DVC stage)."""

    parser = argparse.ArgumentParser(description="Register an exported HNDSR checkpoint.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--eval", type=Path, default=None)
    parser.add_argument("--eval-tiles", type=Path, default=None)
    args = parser.parse_args()
    tiles = args.eval_tiles if args.eval_tiles and args.eval_tiles.is_file() else None
    version = register(args.export_dir, eval_json=args.eval, eval_tiles=tiles, reason="dvc repro")
    print(f"registered {MODEL_NAME} version {version.version} ({version.tags['semver']})")


if __name__ == "__main__":
    main()
