"""A strategies code location over the offline spot sample, with every store in a temporary directory."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.exchange import ExchangeResource
from resources.freqtrade_runner import FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from tests.market_data_support import SAMPLE, SAMPLE_DATA, SPOT_PAIRS, write_universe
from tradai_assets.market_data import build_market_data, markets_key, ohlcv_key
from tradai_assets.strategies import backtest_key, build_strategies, config_key

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_STRATEGIES = REPO / "strategies"
ASSETS_JOB = "location_assets"


def spot_sample_entry(pairs: list[str] | None = None) -> dict[str, Any]:
    return {
        "exchange": "binance", "market_type": "spot", "pairs": pairs or SPOT_PAIRS, "timeframes": ["5m"],
        "start": "2018-01-10", "end": "2018-01-31", "import_dir": str(SAMPLE_DATA),
        "markets_file": str(SAMPLE / "markets" / "binance-spot.json"),
    }


def futures_sample_entry() -> dict[str, Any]:
    return {
        "exchange": "binance", "market_type": "futures", "pairs": ["XRP/USDT:USDT"], "timeframes": ["5m", "1h"],
        "mark_timeframes": ["1h", "8h"], "funding_timeframes": ["8h"], "start": "2021-11-15", "end": "2021-12-19",
        "import_dir": str(SAMPLE_DATA), "markets_file": str(SAMPLE / "markets" / "binance-futures.json"),
    }


def copy_strategies(destination: Path, *names: str) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(EXAMPLE_STRATEGIES / f"{name}.py", destination / f"{name}.py")
    return destination


class BacktestLocation:
    """Market data for the spot sample plus the strategies of one directory, against local stores."""

    def __init__(self, root: Path, strategies: Path, futures: bool = False, mlflow: MlflowTracker | None = None,
                 resources: dict[str, Any] | None = None, spot_entry: dict[str, Any] | None = None,
                 base_path: Path | None = None, spot_pairs: list[str] | None = None):
        """``spot_entry``: another spot universe entry than the whole sample (fewer pairs or days);
        ``spot_pairs``: the spot sample's pairs the universe keeps (all ten when None)."""
        self.root = root
        spot = spot_entry or spot_sample_entry(spot_pairs)
        entries = write_universe(root / "universe.yaml", [spot] + ([futures_sample_entry()] if futures else []))
        self.entry = entries[0]
        self.futures_entry = entries[1] if futures else None
        self.arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.store = BacktestStore(arctic=self.arctic)
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.mlflow = mlflow or MlflowTracker(tracking_uri=self.tracking_uri, artifact_root=str(root / "mlartifacts"))
        self.runner = FreqtradeRunner(workdir=str(root))
        self.strategies = build_strategies(strategies, entries, **({} if base_path is None else {"base_path": base_path}))
        self.specs = {s.name: s for s in self.strategies.specs}
        market_data = build_market_data(entries, schedules_running=False)
        self.defs = dg.Definitions(
            assets=market_data.assets + self.strategies.assets,
            asset_checks=market_data.checks + self.strategies.checks,
            # A named asset job: the implicit one cannot be rebuilt in another process.
            jobs=self.strategies.jobs + [dg.define_asset_job(ASSETS_JOB)],
            resources={
                "arctic": self.arctic,
                "exchange": ExchangeResource(max_retries=0),
                "backtest_store": self.store,
                "freqtrade_runner": self.runner,
                "mlflow": self.mlflow,
                **(resources or {}),
            },
        )
        self.job = self.defs.resolve_implicit_global_asset_job_def()

    def load_sample(self, instance: dg.DagsterInstance, first: str = "2018-01-10", last: str = "2018-01-30") -> None:
        from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

        assert self.job.execute_in_process(instance=instance, asset_selection=[markets_key(self.entry)]).success
        result = self.job.execute_in_process(
            instance=instance, asset_selection=[ohlcv_key(self.entry)],
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
        assert result.success

    def load_futures_sample(self, instance: dg.DagsterInstance) -> None:
        from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

        assert self.futures_entry is not None, "built without futures=True"
        assert self.job.execute_in_process(instance=instance, asset_selection=[markets_key(self.futures_entry)]).success
        result = self.job.execute_in_process(
            instance=instance, asset_selection=[ohlcv_key(self.futures_entry)],
            tags={ASSET_PARTITION_RANGE_START_TAG: "2021-11-15", ASSET_PARTITION_RANGE_END_TAG: "2021-12-18"},
        )
        assert result.success

    def config(self, name: str, instance: dg.DagsterInstance, overrides: dict[str, Any] | None = None):
        key = config_key(name)
        run_config = {"ops": {key.to_python_identifier(): {"config": {"overrides": overrides}}}} if overrides else None
        return self.job.execute_in_process(instance=instance, asset_selection=[key], run_config=run_config, raise_on_error=False)

    def backtest(self, name: str, instance: dg.DagsterInstance, overrides: dict[str, Any] | None = None):
        """The config, then the backtest, in one run."""
        keys = [config_key(name), backtest_key(name)]
        run_config = (
            {"ops": {config_key(name).to_python_identifier(): {"config": {"overrides": overrides}}}} if overrides else None
        )
        return self.job.execute_in_process(instance=instance, asset_selection=keys, run_config=run_config, raise_on_error=False)

    def run_job(self, name: str, instance: dg.DagsterInstance, op: str, config: dict[str, Any]):
        return self.defs.resolve_job_def(name).execute_in_process(
            instance=instance, run_config={"ops": {op: {"config": config}}}, raise_on_error=False
        )


class NetworkBlocked(AssertionError):
    pass


def block_network(monkeypatch) -> list[Any]:
    """Refuse every connection that does not go to the loopback interface; returns the refused addresses."""
    refused: list[Any] = []
    real_connect = socket.socket.connect

    def is_loopback(address) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return isinstance(host, str) and (host.startswith(("127.", "/")) or host in ("::1", "localhost"))

    def guarded_connect(self, address):
        if self.family != socket.AF_UNIX and not is_loopback(address):
            refused.append(address)
            raise NetworkBlocked(f"network access to {address} during an offline backtest")
        return real_connect(self, address)

    def guarded_create_connection(address, *args, **kwargs):
        if not is_loopback(address):
            refused.append(address)
            raise NetworkBlocked(f"network access to {address} during an offline backtest")
        return real_create_connection(address, *args, **kwargs)

    real_create_connection = socket.create_connection
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    return refused


def backtest_offline(location, strategy: str, instance: dg.DagsterInstance):
    """A strategy's config and backtest materialised with the network blocked; fails if anything
    tried to leave the machine. The run's success is the caller's to judge (a blocking check may fail it)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        refused = block_network(monkeypatch)
        result = location.backtest(strategy, instance)
    assert refused == [], f"the backtest of {strategy} tried to reach {refused}"
    return result


def location_job(root: str) -> dg.JobDefinition:
    """The asset job of the location at ``root`` (strategies in ``root/strategies``), rebuilt by the
    processes of the multiprocess executor (see ``dagster.build_reconstructable_job``)."""
    return BacktestLocation(Path(root), Path(root) / "strategies").defs.resolve_job_def(ASSETS_JOB)


def reconstructable_location_job(root: Path):
    return dg.build_reconstructable_job("tests.backtest_support", "location_job", reconstructable_args=(str(root),))
