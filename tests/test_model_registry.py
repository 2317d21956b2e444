"""Aliases in MLflow's registry (SQLite) and the audit log in ArcticDB: promote, keep, rollback, bad input."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.model_registry import (
    AliasNotSetError,
    ModelRegistry,
    ModelRegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
)
from tests.servers import free_port
from tradai_core.drift import ReferenceBins, psi, reference_bins
from tradai_core.promotion import decide

REPO = Path(__file__).resolve().parent.parent


class ThresholdModel(mlflow.pyfunc.PythonModel):
    """The smallest model worth registering: long when the forecast feature beats a threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def predict(self, context, model_input, params=None):
        return (model_input["forecast"] > self.threshold).astype("int64")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    # One SQLite store per module: building MLflow's tables takes seconds, a model version milliseconds.
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    artifacts = tmp_path_factory.mktemp("mlartifacts")
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI: put the environment back
    # exactly, or every later MlflowClient in this process would use this module's registry.
    # set_experiment exports MLFLOW_EXPERIMENT_ID the same way.
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("models", artifact_location=str(artifacts)))
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None  # set_experiment's module-level choice
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def registry(tracking_uri, tmp_path):
    return ModelRegistry(tracking_uri=tracking_uri, store=ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}"))


def register_versions(model: str, thresholds: list[float]) -> list[int]:
    versions = []
    for threshold in thresholds:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=ThresholdModel(threshold), registered_model_name=model,
                pip_requirements=[f"mlflow=={mlflow.__version__}"],  # inferring them costs seconds a call
            )
        versions.append(int(info.registered_model_version))
    return versions


def returns(mean: float, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 0.01, count)


def test_promote_then_rollback_moves_aliases_and_the_audit_log_shows_both(registry):
    v1, v2 = register_versions("trend", [0.0, 0.001])
    registry.set_challenger("trend", v1, trigger="training run a")
    first = decide(returns(0.0, 100, 1), returns(0.005, 100, 2))  # no champion yet: v1 takes the place
    registry.record_decision("trend", first.to_dict(), trigger="promotion sensor")
    assert registry.aliases("trend") == {"champion": v1}

    registry.set_challenger("trend", v2, trigger="training run b")
    better = decide(returns(0.001, 120, 3), returns(0.006, 120, 4))
    assert better.outcome == "promote"
    row = registry.record_decision("trend", better.to_dict(), trigger="promotion sensor")
    assert registry.aliases("trend") == {"champion": v2, "previous": v1}
    assert registry.version("trend", "champion") == v2
    assert row["p_value"] == pytest.approx(better.p_value)

    registry.rollback("trend", trigger="on-call: live losses")
    assert registry.aliases("trend") == {"champion": v1, "previous": v2}
    # Loading by alias gives the rolled-back-to model.
    loaded = mlflow.pyfunc.load_model("models:/trend@champion")
    assert loaded.predict(pd.DataFrame({"forecast": [0.0005]})).tolist() == [1]  # v1's threshold is 0.0

    assert registry.moves("trend") == [
        ("challenger", None, None), ("promote", None, v1),
        ("challenger", v1, v1), ("promote", v1, v2),
        ("rollback", v2, v1),
    ]
    log = registry.audit_log("trend")
    assert log.index.is_monotonic_increasing and str(log.index.tz) == "UTC"
    assert log["trigger"].tolist()[-2:] == ["promotion sensor", "on-call: live losses"]
    recorded = json.loads(log["details"].iloc[3])
    assert recorded["outcome"] == "promote" and recorded["challenger"]["trades"] == 120
    assert recorded["reasons"] == list(better.reasons)


def test_keep_and_inconclusive_move_nothing_but_are_recorded(registry):
    v1, v2 = register_versions("meanrev", [0.0, 0.5])
    registry.set_challenger("meanrev", v1, trigger="t")
    registry.record_decision("meanrev", decide(returns(0, 50, 1), returns(0.01, 50, 2)).to_dict(), trigger="t")
    registry.set_challenger("meanrev", v2, trigger="t")

    worse = decide(returns(0.004, 80, 5), returns(-0.002, 80, 6))
    too_few = decide(returns(0.004, 80, 5), returns(0.01, 12, 7))
    assert (worse.outcome, too_few.outcome) == ("keep", "inconclusive")
    registry.record_decision("meanrev", worse.to_dict(), trigger="weekly")
    registry.record_decision("meanrev", too_few.to_dict(), trigger="weekly")

    assert registry.aliases("meanrev") == {"champion": v1, "challenger": v2}
    log = registry.audit_log("meanrev")
    assert log["event"].tolist()[-2:] == ["keep", "inconclusive"]
    assert log["challenger"].tolist()[-2:] == [v2, v2]
    assert np.isfinite(log["p_value"].iloc[-1])


def test_rollback_to_a_chosen_version(registry):
    v1, v2, v3 = register_versions("pick", [0.0, 0.1, 0.2])
    for version in (v1, v2, v3):
        registry.set_challenger("pick", version, trigger="t")
        registry.record_decision("pick", {"outcome": "promote", "p_value": 0.01}, trigger="t")
    registry.rollback("pick", trigger="audit", to_version=v1)
    assert registry.aliases("pick") == {"champion": v1, "previous": v3}
    with pytest.raises(ModelRegistryError, match=f"version {v1} of pick is already the champion"):
        registry.rollback("pick", trigger="audit", to_version=v1)


def test_audit_log_survives_a_restart(registry, tmp_path):
    (v1,) = register_versions("durable", [0.0])
    registry.set_challenger("durable", v1, trigger="t")
    registry.record_decision("durable", {"outcome": "promote", "p_value": 0.001}, trigger="t")
    script = (
        "import sys; from resources.arctic import ArcticStore; from resources.model_registry import ModelRegistry;"
        "r = ModelRegistry(tracking_uri=sys.argv[1], store=ArcticStore(uri=sys.argv[2]));"
        "print(r.moves('durable'))"
    )
    shown = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", script, registry.tracking_uri, registry.store.uri],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-5000:]
    assert shown.stdout.strip() == f"[('challenger', None, None), ('promote', None, {v1})]"


def test_an_alias_whose_version_was_deleted_fails_clearly(registry):
    v1, v2 = register_versions("gone", [0.0, 0.1])
    for version in (v1, v2):
        registry.set_challenger("gone", version, trigger="t")
        registry.record_decision("gone", {"outcome": "promote", "p_value": 0.01}, trigger="t")
    registry._client().delete_model_version("gone", str(v2))
    with pytest.raises(AliasNotSetError, match=rf"gone@champion no longer resolves: the audit log last set it to version {v2} .* deleted"):
        registry.version("gone", "champion")
    with pytest.raises(AliasNotSetError, match="gone@champion no longer resolves"):
        registry.rollback("gone", trigger="t")
    with pytest.raises(VersionNotFoundError, match=f"version {v2} of gone does not exist"):
        registry.set_challenger("gone", v2, trigger="t")
    with pytest.raises(AliasNotSetError, match="gone has no version with the alias 'challenger'"):
        registry.record_decision("gone", {"outcome": "promote", "p_value": 0.01}, trigger="t")


def test_bad_decisions_are_refused(registry):
    (v1,) = register_versions("strict", [0.0])
    registry.set_challenger("strict", v1, trigger="t")
    with pytest.raises(ValueError, match="promote, keep or inconclusive, got 'maybe'"):
        registry.record_decision("strict", {"outcome": "maybe"}, trigger="t")
    assert registry.aliases("strict") == {"challenger": v1}
    with pytest.raises(AliasNotSetError, match="never-registered has no version with the alias 'champion'"):
        registry.version("never-registered", "champion")


def test_reference_bins_are_stored_with_the_version(registry):
    (v1,) = register_versions("binned", [0.0])
    rng = np.random.default_rng(8)
    training = pd.DataFrame({"rsi": rng.uniform(0, 100, 5_000), "prediction": rng.uniform(size=5_000)})
    registry.log_reference_bins("binned", v1, reference_bins(training).to_dict())
    registry.set_challenger("binned", v1, trigger="t")
    version, stored = registry.reference_bins("binned", "challenger")
    assert version == v1
    recent = pd.DataFrame({"rsi": rng.uniform(0, 100, 1_000), "prediction": rng.uniform(size=1_000)})
    pd.testing.assert_series_equal(psi(ReferenceBins.from_dict(stored), recent), psi(reference_bins(training), recent))


def test_an_unreachable_registry_fails_with_its_address(monkeypatch, tmp_path):
    # MLflow retries for minutes by default; these are its own knobs for failing fast.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    address = f"http://127.0.0.1:{free_port()}"
    registry = ModelRegistry(tracking_uri=address, store=ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}"))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match=rf"MLflow registry at {address} is unreachable while resolving m@champion"):
        registry.version("m", "champion")
    with pytest.raises(RegistryUnavailableError, match="unreachable while reading the aliases of m"):
        registry.aliases("m")
    assert time.monotonic() - started < 30
