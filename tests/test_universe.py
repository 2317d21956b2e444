"""The universe file: what a quant edits to add pairs; mistakes are refused with the reason."""

import pytest

from tests.market_data_support import write_universe
from tradai_core import settings
from tradai_core.universe import load_universe

BASE = {"exchange": "binance", "market_type": "spot", "pairs": ["ETH/BTC"], "timeframes": ["5m"], "start": "2024-01-01"}


def test_shipped_universe_loads_with_paths_resolved():
    universe = load_universe(settings.universe_path())
    spot, futures = universe.markets
    assert spot.import_dir.is_dir() and spot.markets_file.is_file()
    assert ("XRP/USDT:USDT", "8h", "funding_rate") in futures.series()
    assert ("XRP/USDT:USDT", "1h", "mark") in futures.series()


def test_futures_default_to_freqtrades_funding_timeframe(tmp_path):
    (entry,) = write_universe(tmp_path / "u.yaml", [{**BASE, "market_type": "futures", "pairs": ["BTC/USDT:USDT"]}])
    assert entry.series() == [
        ("BTC/USDT:USDT", "5m", "futures"), ("BTC/USDT:USDT", "1h", "mark"), ("BTC/USDT:USDT", "1h", "funding_rate")
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timeframes": ["5x"]}, "5x"),
        ({"market_type": "margin"}, "market_type"),
        ({"pairs": []}, "pairs"),
        ({"mark_timeframes": ["1h"]}, "only for futures"),
        ({"end": "2023-12-31"}, "not after start"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_universe_is_refused_naming_the_field(tmp_path, change, message):
    with pytest.raises(ValueError, match=message) as info:
        write_universe(tmp_path / "u.yaml", [{**BASE, **change}])
    assert "u.yaml" in str(info.value)


def test_an_exchange_and_market_type_appear_once(tmp_path):
    with pytest.raises(ValueError, match="binance_spot"):
        write_universe(tmp_path / "u.yaml", [BASE, BASE])
