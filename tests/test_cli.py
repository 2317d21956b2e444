"""The ``tradai`` CLI without a running stack: strategy files, tokens, configuration and arguments.
(It is exercised against the real stack in test_api_e2e.py.)"""

import jwt
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.api_support import SECRET, bearer, hs256_settings
from tests.backtest_support import BacktestLocation
from tradai_api.app import create_app
from tradai_api.settings import DEFAULT_AUDIENCE
from tradai_client import cli
from tradai_client.client import TradaiClient
from tradai_core.strategy_discovery import discover_strategies


def run(*args, env=None):
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


# strategy new -------------------------------------------------------------------------------------


def test_strategy_new_writes_each_template_and_refuses_existing_files(tmp_path):
    for name, template in (("MyRsi", "rsi"), ("MyEma", "ema"), ("MyBlank", "blank")):
        result = run("strategy", "new", name, "--template", template, "--dir", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"{name}.py").exists()
    specs = {s.name: s for s in discover_strategies(tmp_path)}
    assert set(specs) == {"MyRsi", "MyEma", "MyBlank"}
    assert all(s.problem is None and s.timeframe == "5m" for s in specs.values())
    assert specs["MyRsi"].category == "mean_reversion" and specs["MyEma"].category == "trend"

    before = (tmp_path / "MyRsi.py").read_text()
    again = run("strategy", "new", "MyRsi", "--template", "ema", "--dir", str(tmp_path))
    assert again.exit_code == 1 and "already exists" in again.output
    assert (tmp_path / "MyRsi.py").read_text() == before


@pytest.mark.parametrize("name", ["lowercase", "1Digit", "With-Dash", "With Space", "Über", "A" * 81])
def test_strategy_new_refuses_invalid_class_names(tmp_path, name):
    result = run("strategy", "new", name, "--dir", str(tmp_path))
    assert result.exit_code == 1 and "not a valid strategy class name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_strategy_new_refuses_a_class_name_another_file_defines(tmp_path):
    (tmp_path / "Several.py").write_text("from freqtrade.strategy import IStrategy\nclass Taken(IStrategy):\n    pass\n")
    result = run("strategy", "new", "Taken", "--dir", str(tmp_path))
    said = result.output.replace("\n", "")  # the console wraps a long path at its width
    assert result.exit_code == 1 and "already defined in" in said and "Several.py" in said


def test_every_template_backtests_on_the_sample(tmp_path, instance):
    strategies = tmp_path / "strategies"
    for name, template in (("TplRsi", "rsi"), ("TplEma", "ema"), ("TplBlank", "blank")):
        assert run("strategy", "new", name, "--template", template, "--dir", str(strategies)).exit_code == 0
    location = BacktestLocation(tmp_path, strategies)
    location.load_sample(instance)
    trades = {}
    for name in ("TplRsi", "TplEma", "TplBlank"):
        result = location.run_job("adhoc_backtest", instance, "backtest_with_overrides",
                                  {"strategy": name, "timerange": "20180120-20180125"})
        assert result.success, name
        _, _, metrics = location.mlflow.run_record(result.output_for_node("backtest_with_overrides"))
        trades[name] = metrics["trades"]
    # The rule-based templates trade on the sample as written; the blank one has no entry rule yet.
    assert trades["TplRsi"] > 0 and trades["TplEma"] > 0 and trades["TplBlank"] == 0


# token --------------------------------------------------------------------------------------------


def test_token_is_accepted_by_the_api_with_the_scopes_asked(tmp_path):
    minted = run("token", "--subject", "ci-bot", "--scope", "backtests:read", "--ttl-minutes", "5",
                 env={"TRADAI_API_JWT_SECRET": SECRET})
    assert minted.exit_code == 0, minted.output
    token = minted.output.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=DEFAULT_AUDIENCE)
    assert claims["sub"] == "ci-bot" and claims["scope"] == "backtests:read"
    assert 290 <= claims["exp"] - claims["iat"] <= 300
    with TestClient(create_app(hs256_settings(tmp_path))) as api:
        assert api.get("/api/v1/strategies", headers=bearer(token)).status_code == 200
        assert api.get("/api/v1/data/symbols", headers=bearer(token)).status_code == 403


def test_token_carries_the_audience_the_api_checks(tmp_path):
    minted = run("token", env={"TRADAI_API_JWT_SECRET": SECRET, "TRADAI_API_JWT_AUDIENCE": "tradai-api-staging"})
    token = minted.output.strip()
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="tradai-api-staging")["aud"] == "tradai-api-staging"
    with TestClient(create_app(hs256_settings(tmp_path, jwt_audience="tradai-api-staging"))) as staging:
        assert staging.get("/api/v1/strategies", headers=bearer(token)).status_code == 200
    with TestClient(create_app(hs256_settings(tmp_path))) as default:
        refused = default.get("/api/v1/strategies", headers=bearer(token))
        assert refused.status_code == 401 and "audience is not accepted" in refused.json()["detail"]


def test_token_defaults_to_every_scope_and_needs_the_secret():
    minted = run("token", env={"TRADAI_API_JWT_SECRET": SECRET, "TRADAI_API_JWT_TTL_MINUTES": "30"})
    claims = jwt.decode(minted.output.strip(), SECRET, algorithms=["HS256"], audience=DEFAULT_AUDIENCE)
    assert set(claims["scope"].split()) == {
        "backtests:read", "backtests:run", "data:read", "data:sync", "models:read", "models:write", "bots:read", "bots:write",
        "admin",
    }
    assert claims["exp"] - claims["iat"] == 1800
    missing = run("token", env={"TRADAI_API_JWT_SECRET": ""})
    assert missing.exit_code == 1 and "TRADAI_API_JWT_SECRET is not set" in missing.output


# configuration ------------------------------------------------------------------------------------


def test_client_reads_url_and_token_from_arguments_environment_then_config_file(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('url = "http://from-file:8000"\ntoken = "file-token"\n')
    monkeypatch.setenv("TRADAI_CONFIG", str(config))
    monkeypatch.delenv("TRADAI_API_URL", raising=False)
    monkeypatch.delenv("TRADAI_API_TOKEN", raising=False)
    assert (TradaiClient().url, TradaiClient().token) == ("http://from-file:8000", "file-token")
    monkeypatch.setenv("TRADAI_API_URL", "http://from-env:8000/")
    monkeypatch.setenv("TRADAI_API_TOKEN", "env-token")
    assert (TradaiClient().url, TradaiClient().token) == ("http://from-env:8000", "env-token")
    assert TradaiClient("http://arg:1", "arg-token").token == "arg-token"
    monkeypatch.setenv("TRADAI_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("TRADAI_API_URL")
    assert TradaiClient().url == "http://127.0.0.1:8000"


def test_set_options_become_nested_freqtrade_overrides():
    assert cli.parse_overrides(("max_open_trades=2", "exchange.pair_whitelist=[\"ETH/BTC\"]", "stake_currency=BTC")) == {
        "max_open_trades": 2, "exchange": {"pair_whitelist": ["ETH/BTC"]}, "stake_currency": "BTC",
    }
    result = run("backtest", "SampleStrategy", "--set", "no-equals-sign")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
