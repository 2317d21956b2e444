"""Model versions in MLflow's registry, the ``champion``/``challenger``/``previous`` aliases, and an audit
log of every decision and alias move.

MLflow keeps no history of aliases, so every move (and every champion/challenger decision, moves or not)
is appended to an audit log in ArcticDB: library ``models``, symbol ``<model>|audit``, one row per
event, indexed by UTC time. It lives wherever ArcticDB lives (LMDB locally, S3 in AWS), so it survives
restarts and ECS tasks alike. Rows are only ever appended. Callers serialise changes per model (one
promotion or rollback of a model at a time): ArcticDB keeps the last writer's version of a symbol.

A training is logged and registered here too (``log_training``): one MLflow run with its params,
metrics, artifacts and the model (skops format, pinned requirements), then a new version of the model.

Alias versions come back as int from a SQLite store and as str from a server; here they are always int.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from resources.arctic import ArcticStore
from resources.mlflow_tracker import experiment_id, initialise_sqlite_store
from tradai_core.shadow import SHADOW_EVENTS

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
MODELS_LIBRARY = "models"
MODEL_ARTIFACT = "model"
REFERENCE_BINS_TAG = "tradai.reference_bins"
AUDIT_COLUMNS = {
    # first_champion | challenger | promote | keep | inconclusive | rollback, and a challenger's shadow bot:
    # shadow_started | shadow_failed | shadow_finished (tradai_core.shadow)
    "event": "object",
    "trigger": "object",  # what asked for it: a sensor, a run id, a person
    "champion_before": "float64",  # versions; NaN when the alias was not set
    "champion_after": "float64",
    "previous_after": "float64",
    "challenger": "float64",
    "p_value": "float64",  # NaN unless a decision had one
    "details": "object",  # JSON: the decision record (metrics of both sides, reasons, policy), or a note
}


class ModelRegistryError(RuntimeError):
    pass


class AliasNotSetError(ModelRegistryError):
    pass


class VersionNotFoundError(ModelRegistryError):
    pass


class RegistryUnavailableError(ModelRegistryError):
    pass


@dataclass(frozen=True)
class TrainingRecord:
    """Everything one training logs: its run's contents, the fitted model, and its new version's description."""

    model_name: str
    experiment: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (key, value, step)
    json_artifacts: dict[str, Any]  # artifact path -> JSON value
    text_artifacts: dict[str, str]  # artifact path -> text
    files: list[Path]  # logged at the run's root (the strategy file)
    model: Any  # a fitted scikit-learn estimator
    input_example: pd.DataFrame
    output_example: np.ndarray
    pip_requirements: list[str]
    model_description: str
    version_tags: dict[str, str]
    version_description: str


@dataclass(frozen=True)
class LoggedTraining:
    run_id: str
    version: int


def skops_types(model: Any) -> list[str]:
    """The types skops does not trust by default that this model holds (e.g. the tree predictors of
    gradient boosting). The model was just fitted from the strategy's own estimator, so its types are
    trusted; they are stored with the model and allowed, one by one, when it is loaded."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def audit_symbol(model: str) -> str:
    return f"{model}|audit"


def _unreachable(exc) -> bool:
    # MLflow's REST client reports a failed request (refused, reset, timed out) only through this wording.
    return exc.message.startswith("API request to")


def _alias_in_audit_log(log: pd.DataFrame, alias: str) -> tuple[int, pd.Timestamp, str, str] | None:
    """Where the audit log last left an alias: (version, time, event, trigger), or None when unset."""
    recorded = None
    for when, row in log.iterrows():
        if alias == CHAMPION:
            version = row["champion_after"]
        elif alias == PREVIOUS:
            version = row["previous_after"]
        elif alias == CHALLENGER and row["event"] in ("challenger", "promote"):
            # A promotion consumes the challenger alias.
            version = row["challenger"] if row["event"] == "challenger" else float("nan")
        else:
            continue
        recorded = None if np.isnan(version) else (int(version), when, row["event"], row["trigger"])
    return recorded


def _version(value: float) -> int | None:
    return None if np.isnan(value) else int(value)


class ModelRegistry(ConfigurableResource):
    """MLflow's model registry (aliases, not stages) with an audit log of every move in ArcticDB."""

    tracking_uri: str = Field(description="MLflow tracking URI, e.g. sqlite:///.tradai/mlflow.db or http://host:5000")
    registry_uri: str | None = Field(default=None, description="MLflow registry URI; the tracking URI when None.")
    store: ArcticStore = Field(description="ArcticDB, where the audit log lives (library 'models').")

    @property
    def _registry(self) -> str:
        return self.registry_uri or self.tracking_uri

    def _client(self):
        from mlflow import MlflowClient

        for uri in {self.tracking_uri, self._registry}:
            if uri.startswith("sqlite:///"):
                initialise_sqlite_store(uri)
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self._registry)

    @contextmanager
    def _reaching(self, what: str) -> Iterator[None]:
        """Turn MLflow's failed HTTP requests into one error that names the registry.

        How long MLflow retries first is MLflow's own setting: MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR and MLFLOW_HTTP_REQUEST_TIMEOUT (minutes by default)."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            if _unreachable(exc):
                raise RegistryUnavailableError(
                    f"MLflow registry at {self._registry} is unreachable while {what}: {exc.message}"
                ) from exc
            raise

    # Logging a training -------------------------------------------------------------------------

    def log_training(self, record: TrainingRecord, artifact_root: str | None = None) -> LoggedTraining:
        """One finished MLflow run with everything in ``record`` (failed when logging fails), then a new
        registered version of the model from it. Aliases are not moved here."""
        import mlflow.sklearn
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.models import infer_signature
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        client = self._client()
        name = record.model_name
        with self._reaching(f"logging a training of {name}"):
            run = client.create_run(experiment_id(client, record.experiment, artifact_root),
                                    run_name=record.run_name, tags=record.tags)
            run_id = run.info.run_id
            try:
                now = run.info.start_time
                metrics = [Metric(key, value, now, step) for key, value, step in record.metrics]
                params = list(record.params.items())
                for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                    client.log_batch(run_id, params=[Param(k, v) for k, v in params[i:i + 100]])
                for i in range(0, len(metrics), 500):
                    client.log_batch(run_id, metrics=metrics[i:i + 500])
                for path, value in record.json_artifacts.items():
                    client.log_dict(run_id, value, path)
                for path, text in record.text_artifacts.items():
                    client.log_text(run_id, text, path)
                for file in record.files:
                    client.log_artifact(run_id, str(file))
                with tempfile.TemporaryDirectory(prefix=f"model-{name}-") as directory:
                    path = Path(directory) / MODEL_ARTIFACT
                    mlflow.sklearn.save_model(
                        record.model, str(path), signature=infer_signature(record.input_example, record.output_example),
                        input_example=record.input_example, pip_requirements=record.pip_requirements,
                        serialization_format="skops", skops_trusted_types=skops_types(record.model),
                    )
                    client.log_artifacts(run_id, str(path), MODEL_ARTIFACT)
            except Exception:
                client.set_terminated(run_id, status="FAILED")
                raise
            client.set_terminated(run_id)
            try:
                client.create_registered_model(name, description=record.model_description)
            except MlflowException as exc:
                if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
            found = client.create_model_version(
                name, source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id,
                tags=record.version_tags, description=record.version_description,
            )
        return LoggedTraining(run_id, int(found.version))

    # Reading ------------------------------------------------------------------------------------

    def aliases(self, model: str) -> dict[str, int]:
        with self._reaching(f"reading the aliases of {model}"):
            found = self._client().get_registered_model(model)
        return {alias: int(version) for alias, version in found.aliases.items()}

    def version(self, model: str, alias: str) -> int:
        """The version an alias points at; a clear error when it is not set or its version was deleted."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        with self._reaching(f"resolving {model}@{alias}"):
            try:
                version = int(client.get_model_version_by_alias(model, alias).version)
            except MlflowException as exc:
                # MLflow answers a missing alias with INVALID_PARAMETER_VALUE, a missing model with
                # RESOURCE_DOES_NOT_EXIST; anything else (unreachable, forbidden) is not about the alias.
                if exc.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST") or _unreachable(exc):
                    raise
                raise AliasNotSetError(self._missing_alias_message(model, alias)) from exc
        self._require_version(model, version, f"{model}@{alias}")
        return version

    def _missing_alias_message(self, model: str, alias: str) -> str:
        recorded = _alias_in_audit_log(self.audit_log(model), alias)
        if recorded is None:
            return f"{model} has no version with the alias {alias!r} (the audit log has it unset too)"
        version, when, event, trigger = recorded
        if not self._version_exists(model, version):
            return (
                f"{model}@{alias} no longer resolves: the audit log last set it to version {version} "
                f"({event} at {when}, trigger {trigger!r}), and that version has been deleted from the "
                "registry (MLflow drops a deleted version's aliases)"
            )
        return (
            f"{model}@{alias} is not set, although the audit log last set it to version {version} "
            f"({event} at {when}); it was removed outside TradAI"
        )

    def _version_exists(self, model: str, version: int) -> bool:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        with self._reaching(f"reading {model} version {version}"):
            try:
                self._client().get_model_version(model, str(version))
            except MlflowException as exc:
                if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                    raise
                return False
        return True

    def _require_version(self, model: str, version: int, what: str) -> None:
        if not self._version_exists(model, version):
            raise VersionNotFoundError(f"{what}: version {version} of {model} does not exist (deleted?)")

    def _optional(self, model: str, alias: str) -> int | None:
        return self.aliases(model).get(alias)

    # Moving aliases -----------------------------------------------------------------------------

    def _set(self, model: str, alias: str, version: int) -> None:
        with self._reaching(f"setting {model}@{alias}"):
            self._client().set_registered_model_alias(model, alias, str(version))

    def _drop(self, model: str, alias: str) -> None:
        with self._reaching(f"removing {model}@{alias}"):
            self._client().delete_registered_model_alias(model, alias)

    def set_challenger(self, model: str, version: int, trigger: str) -> pd.Series:
        """Point ``challenger`` at a (newly trained) version; recorded in the audit log."""
        self._require_version(model, version, f"making version {version} the challenger")
        champion = self._optional(model, CHAMPION)
        self._set(model, CHALLENGER, version)
        return self._record(model, "challenger", trigger, champion, champion, self._optional(model, PREVIOUS), version)

    def set_first_champion(self, model: str, version: int, trigger: str) -> pd.Series:
        """Point ``champion`` at the first version of a model that has none (nothing to evaluate it
        against); recorded in the audit log as a ``first_champion`` event. Refused when a champion exists."""
        self._require_version(model, version, f"making version {version} the first champion")
        champion = self._optional(model, CHAMPION)
        if champion is not None:
            raise ModelRegistryError(
                f"{model} already has a champion (version {champion}); a new version becomes the challenger"
            )
        self._set(model, CHAMPION, version)
        return self._record(model, "first_champion", trigger, None, version, self._optional(model, PREVIOUS),
                            self._optional(model, CHALLENGER))

    def record_decision(self, model: str, decision: dict[str, Any], trigger: str) -> pd.Series:
        """Apply a champion/challenger decision (``tradai_core.promotion.PromotionDecision.to_dict()``).

        ``promote``: ``previous`` moves to the old champion (when there is one), ``champion`` to the
        challenger's version, and the ``challenger`` alias is removed (that version is now the champion).
        ``keep`` and ``inconclusive`` move nothing. Every outcome is appended to the audit log."""
        outcome = decision["outcome"]
        if outcome not in ("promote", "keep", "inconclusive"):
            raise ValueError(f"decision outcome must be promote, keep or inconclusive, got {outcome!r}")
        challenger = self.version(model, CHALLENGER)
        champion = self._optional(model, CHAMPION)
        if champion is not None:
            self._require_version(model, champion, f"{model}@{CHAMPION}")
        previous = self._optional(model, PREVIOUS)
        if outcome == "promote":
            if champion is not None:
                self._set(model, PREVIOUS, champion)
                previous = champion
            self._set(model, CHAMPION, challenger)
            self._drop(model, CHALLENGER)
        after = challenger if outcome == "promote" else champion
        return self._record(model, outcome, trigger, champion, after, previous, challenger, decision)

    def rollback(self, model: str, trigger: str, to_version: int | None = None) -> pd.Series:
        """Move ``champion`` back to ``previous`` (or to ``to_version``); ``previous`` then holds the version
        rolled back from, so a rollback can itself be undone."""
        champion = self.version(model, CHAMPION)
        target = self.version(model, PREVIOUS) if to_version is None else int(to_version)
        self._require_version(model, target, f"rolling {model} back to version {target}")
        if target == champion:
            raise ModelRegistryError(f"version {target} of {model} is already the champion; nothing to roll back")
        self._set(model, PREVIOUS, champion)
        self._set(model, CHAMPION, target)
        return self._record(model, "rollback", trigger, champion, target, champion, self._optional(model, CHALLENGER))

    def promote(self, model: str, trigger: str, version: int | None = None) -> pd.Series:
        """Make the challenger (or ``version``) the champion by hand, without a champion/challenger
        evaluation: ``previous`` moves to the old champion, and the ``challenger`` alias is removed
        when it pointed at the promoted version. Recorded in the audit log as a ``promote`` whose
        details say it was manual."""
        challenger = self._optional(model, CHALLENGER)
        if version is None:
            target = self.version(model, CHALLENGER)
        else:
            target = int(version)
            self._require_version(model, target, f"promoting version {target} of {model}")
        champion = self._optional(model, CHAMPION)
        if target == champion:
            raise ModelRegistryError(f"version {target} of {model} is already the champion; nothing to promote")
        previous = self._optional(model, PREVIOUS)
        if champion is not None:
            self._set(model, PREVIOUS, champion)
            previous = champion
        self._set(model, CHAMPION, target)
        if challenger == target:
            self._drop(model, CHALLENGER)
        details = {"manual": True, "promoted": target, "challenger_before": challenger}
        return self._record(model, "promote", trigger, champion, target, previous, target, details)

    def record_shadow(self, model: str, event: str, challenger: int, trigger: str, details: dict[str, Any]) -> pd.Series:
        """Append a step of a challenger's shadow bot (``tradai_core.shadow.SHADOW_EVENTS``) to the audit
        log; it moves no alias (the champion columns repeat the current champion)."""
        if event not in SHADOW_EVENTS:
            raise ValueError(f"shadow event must be one of {', '.join(SHADOW_EVENTS)}, got {event!r}")
        champion = self._optional(model, CHAMPION)
        return self._record(model, event, trigger, champion, champion, self._optional(model, PREVIOUS), challenger,
                            details)

    # Listing ------------------------------------------------------------------------------------

    def exists(self, model: str) -> bool:
        """Whether the registry has a registered model of that name."""
        from mlflow.exceptions import MlflowException

        with self._reaching(f"reading {model}"):
            try:
                self._client().get_registered_model(model)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                return False
        return True

    def models(self) -> dict[str, dict[str, int]]:
        """Every registered model and its aliases."""
        with self._reaching("listing the registered models"):
            found = self._client().search_registered_models()
            return {m.name: {alias: int(v) for alias, v in m.aliases.items()} for m in found}

    def versions(self, model: str, with_metrics: bool = True) -> list[dict[str, Any]]:
        """Every version of a model, newest first: version, aliases, creation time (UTC), run id,
        status, and the run's metrics (one read per version, skipped with ``with_metrics=False``)."""
        client = self._client()
        with self._reaching(f"listing the versions of {model}"):
            found = client.search_model_versions(f"name = '{model}'")
            aliases: dict[int, list[str]] = {}
            for alias, version in client.get_registered_model(model).aliases.items():
                aliases.setdefault(int(version), []).append(alias)
            out = []
            for v in sorted(found, key=lambda v: int(v.version), reverse=True):
                metrics = client.get_run(v.run_id).data.metrics if with_metrics and v.run_id else {}
                out.append({
                    "version": int(v.version),
                    "aliases": sorted(aliases.get(int(v.version), [])),
                    "created_at": pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC").to_pydatetime(),
                    "run_id": v.run_id,
                    "status": v.status,
                    "metrics": dict(metrics),
                })
        return out

    # Reference distributions --------------------------------------------------------------------

    def log_reference_bins(self, model: str, version: int, bins: dict[str, Any]) -> str:
        """Store a version's reference feature bins (``ReferenceBins.to_dict()``) in its run; returns the path."""
        client = self._client()
        with self._reaching(f"storing reference bins of {model} version {version}"):
            found = client.get_model_version(model, str(version))
            if not found.run_id:
                raise ModelRegistryError(f"version {version} of {model} has no run to store reference bins in")
            path = f"reference_bins/{model}-v{version}.json"
            client.log_dict(found.run_id, bins, path)
            client.set_model_version_tag(model, str(version), REFERENCE_BINS_TAG, path)
        return path

    def reference_bins(self, model: str, alias: str) -> tuple[int, dict[str, Any]]:
        """The version behind an alias and its reference bins."""
        version = self.version(model, alias)
        client = self._client()
        with self._reaching(f"reading reference bins of {model}@{alias}"):
            found = client.get_model_version(model, str(version))
            path = found.tags.get(REFERENCE_BINS_TAG)
            if path is None:
                raise ModelRegistryError(f"{model} version {version} ({alias}) has no reference bins stored")
            with tempfile.TemporaryDirectory() as directory:
                local = client.download_artifacts(found.run_id, path, directory)
                return version, json.loads(Path(local).read_text())

    # Audit log ----------------------------------------------------------------------------------

    def _record(
        self, model: str, event: str, trigger: str, champion_before: int | None, champion_after: int | None,
        previous_after: int | None, challenger: int | None, details: dict[str, Any] | None = None,
    ) -> pd.Series:
        lib = self.store.library(MODELS_LIBRARY)
        symbol = audit_symbol(model)
        # One appender at a time (the API and runs may record at once); a lost row would be a lost decision.
        with self.store.writer(MODELS_LIBRARY):
            now = pd.Timestamp.now(tz="UTC")
            if lib.has_symbol(symbol):
                last = lib.tail(symbol, 1).data.index[-1]
                now = max(now, last + pd.Timedelta(1, "ns"))  # the index must grow even if the clock does not
            nan = float("nan")
            row = pd.DataFrame(
                {
                    "event": [event],
                    "trigger": [trigger],
                    "champion_before": [nan if champion_before is None else float(champion_before)],
                    "champion_after": [nan if champion_after is None else float(champion_after)],
                    "previous_after": [nan if previous_after is None else float(previous_after)],
                    "challenger": [nan if challenger is None else float(challenger)],
                    "p_value": [nan if not details or details.get("p_value") is None else float(details["p_value"])],
                    "details": [json.dumps(details or {}, sort_keys=True)],
                },
                index=pd.DatetimeIndex([now], name="time"),
            ).astype(AUDIT_COLUMNS)
            try:
                if lib.has_symbol(symbol):
                    lib.append(symbol, row, prune_previous_versions=True)
                else:
                    lib.write(symbol, row)
            except Exception as exc:
                raise ModelRegistryError(
                    f"{model}: {event} was applied to the aliases but could not be written to the audit log "
                    f"({MODELS_LIBRARY}/{symbol}): {row.iloc[0].to_dict()}"
                ) from exc
        return row.iloc[0]

    def audit_log(self, model: str) -> pd.DataFrame:
        """Every recorded event of a model, oldest first (empty when there is none)."""
        lib = self.store.library(MODELS_LIBRARY)
        symbol = audit_symbol(model)
        if not lib.has_symbol(symbol):
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in AUDIT_COLUMNS.items()},
                                index=pd.DatetimeIndex([], tz="UTC", name="time"))
        return lib.read(symbol).data

    def moves(self, model: str) -> list[tuple[str, int | None, int | None]]:
        """(event, champion before, champion after) of every recorded event, oldest first."""
        log = self.audit_log(model)
        return [(row.event, _version(row.champion_before), _version(row.champion_after)) for row in log.itertuples()]
