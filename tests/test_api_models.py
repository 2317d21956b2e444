"""The models routes over real HTTP (the API under uvicorn on 127.0.0.1), against MLflow's registry on
SQLite and the audit log in ArcticDB on LMDB; training launched through a real Dagster webserver."""

from __future__ import annotations

import datetime as dt

import pytest
from mlflow import MlflowClient

from resources.arctic import ArcticStore
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry
from tests.api_support import hs256_settings, hs256_token, queued_run, serve_api, status_of
from tradai_api.app import create_app
from tradai_api.auth import BACKTESTS_READ, MODELS_READ, MODELS_WRITE
from tradai_client.client import ApiError, TradaiClient

MODEL = "DemoModel"
LONE = "LoneModel"  # a champion and nothing before it
MODEL_FILE = '''
from tradai_core.model_strategy import ModelStrategy


class DemoModel(ModelStrategy):
    """A model strategy the API tests train."""
    timeframe = "5m"
    model_settings = {"label_horizon": 3}
'''


def register(mlflow: MlflowClient, name: str, versions: int, artifacts: Path) -> None:
    mlflow.create_registered_model(name)
    experiment = mlflow.create_experiment(f"{name}-training", artifact_location=(artifacts / name).as_uri())
    for fold_auc in [0.5 + 0.01 * i for i in range(versions)]:
        run = mlflow.create_run(experiment).info.run_id
        mlflow.log_metric(run, "auc", fold_auc)
        mlflow.create_model_version(name, f"runs:/{run}/model", run_id=run)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("api-models")


@pytest.fixture(scope="module")
def registry(root) -> ModelRegistry:
    """DemoModel: v1 champion, v2 challenger (as training leaves them); LoneModel: v1 champion only."""
    registry = ModelRegistry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", store=ArcticStore(uri=f"lmdb://{root / 'arctic'}"))
    mlflow = registry._client()
    register(mlflow, MODEL, 2, root / "mlartifacts")
    register(mlflow, LONE, 1, root / "mlartifacts")
    for name in (MODEL, LONE):
        mlflow.set_registered_model_alias(name, CHAMPION, "1")
    registry.set_challenger(MODEL, 2, trigger="training-run-1")
    return registry


@pytest.fixture(scope="module")
def api_url(root, registry, graphql_url):
    strategies = root / "strategies"
    strategies.mkdir()
    (strategies / "DemoModel.py").write_text(MODEL_FILE)
    (strategies / "Plain.py").write_text("from freqtrade.strategy import IStrategy\nclass Plain(IStrategy):\n    pass\n")
    settings = hs256_settings(root, strategies_dir=strategies, dagster_graphql_url=graphql_url)
    with serve_api(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def api(api_url):
    with TradaiClient(api_url, hs256_token(subject="quant-1")) as client:
        yield client


def client_with(api_url: str, *scopes: str) -> TradaiClient:
    return TradaiClient(api_url, hs256_token(scopes, subject="limited"))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_list_shows_model_strategies_and_their_aliases(api):
    items = {m["name"]: m for m in api.models()}
    assert items[MODEL]["file"] == "DemoModel.py" and items[MODEL]["registered"] is True
    assert items[MODEL]["aliases"] == {CHAMPION: 1, CHALLENGER: 2}
    assert items[LONE]["file"] is None and items[LONE]["aliases"] == {CHAMPION: 1}
    assert "Plain" not in items  # not a model strategy


def test_versions_have_aliases_times_runs_and_metrics(api):
    versions = api.model_versions(MODEL)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["aliases"] == [CHALLENGER] and versions[1]["aliases"] == [CHAMPION]
    assert versions[0]["metrics"] == {"auc": pytest.approx(0.51)} and versions[0]["run_id"]
    # ISO-8601 text drops a zero fraction ("…:57Z" beside "…:57.052Z"), so compare the times, not the text.
    assert at(versions[0]["created_at"]) >= at(versions[1]["created_at"])


def test_promote_then_rollback_restores_the_previous_version_and_the_audit_log_shows_both(api, registry):
    promoted = api.promote(MODEL)
    assert (promoted["champion_before"], promoted["champion_after"], promoted["previous_after"]) == (1, 2, 1)
    assert promoted["trigger"] == "api:quant-1" and promoted["aliases"] == {CHAMPION: 2, "previous": 1}

    rolled = api.rollback(MODEL)
    assert (rolled["event"], rolled["champion_before"], rolled["champion_after"]) == ("rollback", 2, 1)
    assert registry.version(MODEL, CHAMPION) == 1 and registry.version(MODEL, "previous") == 2

    audit = api.model_audit(MODEL)
    assert [(e["event"], e["trigger"], e["champion_before"], e["champion_after"]) for e in audit] == [
        ("challenger", "training-run-1", 1, 1),
        ("promote", "api:quant-1", 1, 2),
        ("rollback", "api:quant-1", 2, 1),
    ]
    assert audit[1]["details"]["manual"] is True
    assert at(audit[0]["time"]) < at(audit[1]["time"]) < at(audit[2]["time"])

    # A rollback can be undone, and a given version can be promoted.
    assert api.rollback(MODEL, to_version=2)["champion_after"] == 2
    assert api.promote(MODEL, version=1)["champion_after"] == 1
    assert [e["event"] for e in api.model_audit(MODEL)][-2:] == ["rollback", "promote"]


def test_conflicts_are_409(api):
    # LoneModel has a champion and no previous version or challenger.
    assert status_of(api.rollback, LONE) == 409
    assert status_of(api.promote, LONE) == 409
    assert status_of(api.promote, LONE, version=1) == 409  # already the champion
    assert status_of(api.rollback, LONE, to_version=1) == 409
    assert status_of(api.rollback, LONE, to_version=7) == 404  # no such version
    assert [e["event"] for e in api.model_audit(LONE)] == []  # nothing moved, nothing recorded


def test_unknown_model_is_404(api):
    for call in (api.model_versions, api.model_audit, api.promote, api.rollback, api.train):
        with pytest.raises(ApiError) as missing:
            call("NoSuchModel")
        assert missing.value.status == 404 and "NoSuchModel" in str(missing.value.detail)
    with pytest.raises(ApiError) as not_a_model:
        api.train("Plain")
    assert not_a_model.value.status == 404 and "not a model strategy" in not_a_model.value.detail


def test_scopes(api_url):
    with client_with(api_url, MODELS_READ) as reader:
        assert reader.models()
        assert status_of(reader.promote, MODEL) == 403
        assert status_of(reader.rollback, MODEL) == 403
        assert status_of(reader.train, MODEL) == 403
    with client_with(api_url, BACKTESTS_READ, MODELS_WRITE) as writer_only:
        assert status_of(writer_only.models) == 403
        assert status_of(writer_only.model_audit, MODEL) == 403
    with TradaiClient(api_url, token=None) as anonymous:
        anonymous._http.headers.pop("Authorization", None)
        assert status_of(anonymous.models) == 401


def test_train_launches_the_training_asset_through_dagster(api, graphql_url):
    accepted = api.train(MODEL)
    assert accepted["asset"] == f"strategies/{MODEL}/model" and accepted["status"] == "QUEUED"
    run = queued_run(graphql_url, accepted["job_id"])
    assert run["jobName"] == "__ASSET_JOB"
    assert run["assetSelection"] == [{"path": ["strategies", MODEL, "model"]}]
    assert run["tags"]["tradai/requested_by"] == "quant-1" and run["tags"]["tradai/kind"] == "training"
    assert run["runConfig"] == {"ops": {"strategies__DemoModel__model": {"config": {"trigger": "api:quant-1"}}}}


def test_registry_unreachable_is_503(root, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = hs256_settings(root / "unreachable", mlflow_tracking_uri="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/api/v1/models/{MODEL}/versions", headers={"Authorization": f"Bearer {hs256_token()}"})
    assert answer.status_code == 503 and "unreachable" in answer.json()["detail"]


def test_cli_models_commands(api_url, api, monkeypatch):
    from click.testing import CliRunner

    from tradai_client import cli

    # One table row a line: the console took its width from the terminal (or COLUMNS) at import.
    monkeypatch.setattr(cli.console, "width", 200)
    env = {"TRADAI_API_URL": api_url, "TRADAI_API_TOKEN": hs256_token(subject="cli-user")}

    def run(*args):
        return CliRunner().invoke(cli.main, ["models", *args], env=env, catch_exceptions=False)

    before = api.models()
    champion = {m["name"]: m for m in before}[MODEL]["aliases"][CHAMPION]
    listed = run("list")
    assert listed.exit_code == 0 and MODEL in listed.output and f"v{champion}" in listed.output
    versions = run("versions", MODEL)
    assert versions.exit_code == 0 and "auc" in versions.output and "v2" in versions.output
    rolled = run("rollback", MODEL)
    assert rolled.exit_code == 0, rolled.output
    assert "rollback" in rolled.output and "trigger api:cli-user" in rolled.output
    assert api.model_audit(MODEL)[-1]["trigger"] == "api:cli-user"
    back = run("rollback", MODEL, "--to", str(champion))
    assert back.exit_code == 0 and f"-> v{champion}" in back.output
    audit = run("audit", MODEL)
    assert audit.exit_code == 0 and audit.output.count("rollback") >= 3
    refused = run("rollback", LONE)
    assert refused.exit_code == 1 and "HTTP 409" in refused.output and "nothing to roll back" in refused.output
    missing = run("promote", "NoSuchModel")
    assert missing.exit_code == 1 and "HTTP 404" in missing.output
