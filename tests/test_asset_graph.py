"""The code location's asset graph declares every input an asset reads, and a strategy's assets carry
its source hash as their code version, so the Dagster UI shows when a strategy's code changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from tradai_assets.definitions import build_definitions
from tradai_core.keys import backtest_key, config_key, deployment_key, model_key
from tradai_core.strategy_discovery import source_hash

REPO = Path(__file__).resolve().parent.parent
PLAIN, MODEL = "SampleStrategy", "MlMomentum"


@pytest.fixture
def strategies(tmp_path: Path, tradai_home, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "strategies"
    directory.mkdir()
    for name in (PLAIN, MODEL):
        shutil.copy(REPO / "strategies" / f"{name}.py", directory)
    monkeypatch.setenv("TRADAI_STRATEGIES", str(directory))
    return directory


def graph() -> dg.AssetGraph:
    return build_definitions().resolve_asset_graph()


def deps(asset_graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    return set(asset_graph.get(key).parent_keys)


def code_versions(asset_graph, name: str) -> dict[str, str | None]:
    keys = {"config": config_key(name), "backtest": backtest_key(name), "model": model_key(name)}
    return {kind: asset_graph.get(key).code_version for kind, key in keys.items() if asset_graph.has(key)}


def test_the_model_reads_its_config_and_the_deployment_the_model(strategies):
    asset_graph = graph()
    assert config_key(MODEL) in deps(asset_graph, model_key(MODEL))
    assert {config_key(MODEL), backtest_key(MODEL), model_key(MODEL)} <= deps(asset_graph, deployment_key(MODEL))
    assert model_key(MODEL) in deps(asset_graph, backtest_key(MODEL))
    assert deps(asset_graph, deployment_key(PLAIN)) == {config_key(PLAIN), backtest_key(PLAIN)}
    assert config_key(PLAIN) in deps(asset_graph, backtest_key(PLAIN))


def test_strategy_assets_carry_the_source_hash_as_code_version(strategies):
    asset_graph = graph()
    assert code_versions(asset_graph, PLAIN) == {
        "config": source_hash(strategies / f"{PLAIN}.py"), "backtest": source_hash(strategies / f"{PLAIN}.py")}
    model_hash = source_hash(strategies / f"{MODEL}.py")
    assert code_versions(asset_graph, MODEL) == {"config": model_hash, "backtest": model_hash, "model": model_hash}


def test_changing_a_strategy_file_changes_only_its_code_versions(strategies):
    before = {name: code_versions(graph(), name) for name in (PLAIN, MODEL)}
    edited = strategies / f"{MODEL}.py"
    edited.write_text(edited.read_text() + "\n# a quant's edit\n")

    after = {name: code_versions(graph(), name) for name in (PLAIN, MODEL)}

    assert after[PLAIN] == before[PLAIN]
    assert set(after[MODEL].values()) == {source_hash(edited)}
    assert all(after[MODEL][kind] != before[MODEL][kind] for kind in before[MODEL])
