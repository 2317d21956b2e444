"""Candles from Binance's public data archive: archive-shaped files built from the real sample candles,
served by a local HTTP server; what the archive lacks comes from the local simulated exchange's REST API
(serving the same sample candles)."""

import os
import time

import pandas as pd
import pytest

from resources.arctic import ArcticStore
from resources.binance_archive import ArchiveFile, parse_csv, plan_files
from resources.exchange import ExchangeResource
from tests.archive_server import (
    archive_server,
    csv_bytes,
    kline_table,
    klines_path,
    write_candles,
    write_file,
    write_funding,
    write_raw,
)
from tests.fakes.client import FakeBinance
from tests.market_data_support import (
    SAMPLE_DATA,
    SPOT_PAIRS,
    MarketDataLocation,
    failure_message,
    materialization_metadata,
    write_universe,
)
from tests.servers import free_port
from tradai_assets.market_data import ohlcv_key
from tradai_core.candles import candle_symbol
from tradai_core.universe import UniverseEntry

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def sample(pair: str, timeframe: str = "5m", candle_type: str = "spot") -> pd.DataFrame:
    name = pair.replace("/", "_").replace(":", "_")
    if candle_type == "spot":
        return pd.read_feather(SAMPLE_DATA / f"{name}-{timeframe}.feather").set_index("date")
    return pd.read_feather(SAMPLE_DATA / "futures" / f"{name}-{timeframe}-{candle_type}.feather").set_index("date")


def market_id(pair: str) -> str:
    return pair.split(":")[0].replace("/", "")


@pytest.fixture(scope="module")
def rest():
    """The local simulated exchange serving the sample candles over REST."""
    with FakeBinance(data_dir=SAMPLE_DATA) as fake:
        yield fake


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory):
    return tmp_path_factory.mktemp("archive")


@pytest.fixture(scope="module")
def archive_url(archive_root):
    with archive_server(archive_root) as url:
        yield url


@pytest.fixture
def archive(request, archive_root, archive_url, rest):
    """This test's own archive: a folder of the module's server, and its base URL."""
    rest.reset()
    case = "".join(c if c.isalnum() else "-" for c in request.node.name)
    yield archive_root / case, f"{archive_url}/{case}"
    rest.reset()


def location_for(tmp_path, rest, archive_base, entry):
    exchange = ExchangeResource(ccxt_config={"binance": {"urls": rest.ccxt_config()["urls"], "timeout": 5000}},
                                max_retries=1, backoff_seconds=0.01)
    universe = write_universe(tmp_path / "universe.yaml", [{"archive_url": archive_base, **entry}])
    return MarketDataLocation(universe, ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}"), exchange)


def spot(pairs, start="2018-01-01", end="2018-02-01"):
    return {"exchange": "binance", "market_type": "spot", "pairs": pairs, "timeframes": ["5m"], "start": start,
            "end": end}


def stored(location, pair, timeframe="5m", candle_type="spot", market_type="spot"):
    return location.arctic.read_candles("binance", market_type, candle_symbol(pair, timeframe, candle_type))


def sources(meta) -> list[dict]:
    return [r.data for r in meta["sources"].records]


def assert_same_candles(actual, expected, exact=True):
    kwargs = {} if exact else {"check_exact": False, "rtol": 0, "atol": 1e-8}
    pd.testing.assert_frame_equal(actual, expected, check_freq=False, check_names=False, **kwargs)


# Planning -------------------------------------------------------------------------------------------


def test_plan_takes_published_months_then_published_days_and_leaves_the_rest_to_rest():
    plan = plan_files("ETHBTC", "spot", "1m", "spot", ts("2024-01-15"), ts("2024-03-05 12:00"), ts("2024-03-04 08:00"))
    files = [p for p in plan if isinstance(p, ArchiveFile)]
    rest = [p for p in plan if not isinstance(p, ArchiveFile)]
    # January's monthly file is out; February ended less than a week ago, so its days come as daily files.
    assert files[0] == ArchiveFile("data/spot/monthly/klines/ETHBTC/1m/ETHBTC-1m-2024-01.zip", ts("2024-01-15"), ts("2024-02-01"))
    assert files[1].path == "data/spot/daily/klines/ETHBTC/1m/ETHBTC-1m-2024-02-01.zip"
    assert files[-1].path == "data/spot/daily/klines/ETHBTC/1m/ETHBTC-1m-2024-03-02.zip"  # published on the 3rd
    assert len(files) == 1 + 29 + 2
    assert [(lo, hi) for lo, hi, _ in rest] == [
        (ts("2024-03-03"), ts("2024-03-04")), (ts("2024-03-04"), ts("2024-03-05")), (ts("2024-03-05"), ts("2024-03-05 12:00"))]


def test_plan_names_futures_series_as_the_archive_does():
    now = ts("2024-06-01")
    def first(market, candle_type, timeframe="1h"):
        return plan_files("BTCUSD_PERP" if market == "futures/cm" else "XRPUSDT", market, timeframe, candle_type,
                          ts("2024-01-01"), ts("2024-02-01"), now)[0].path
    assert first("futures/um", "futures") == "data/futures/um/monthly/klines/XRPUSDT/1h/XRPUSDT-1h-2024-01.zip"
    assert first("futures/cm", "futures") == "data/futures/cm/monthly/klines/BTCUSD_PERP/1h/BTCUSD_PERP-1h-2024-01.zip"
    assert first("futures/um", "mark") == "data/futures/um/monthly/markPriceKlines/XRPUSDT/1h/XRPUSDT-1h-2024-01.zip"
    assert first("futures/um", "index") == "data/futures/um/monthly/indexPriceKlines/XRPUSDT/1h/XRPUSDT-1h-2024-01.zip"
    assert first("futures/um", "funding_rate", "8h") == \
        "data/futures/um/monthly/fundingRate/XRPUSDT/XRPUSDT-fundingRate-2024-01.zip"
    # Funding rates have no daily files: a month not archived yet is REST's.
    plan = plan_files("XRPUSDT", "futures/um", "8h", "funding_rate", ts("2024-05-20"), ts("2024-06-01"), now)
    assert plan == [(ts("2024-05-20"), ts("2024-06-01"), "month not archived yet")]
    with pytest.raises(ValueError, match="futures only"):
        plan_files("ETHBTC", "spot", "1h", "mark", ts("2024-01-01"), ts("2024-02-01"), now)


def test_csv_parsing_reads_milliseconds_microseconds_headers_and_inverse_volume():
    frame = sample("ETH/BTC").iloc[:50]
    table = kline_table(frame, pd.Timedelta("5m"))
    ms_rows = parse_csv(csv_bytes(table, header=False), "ms.csv", "spot")
    us_rows = parse_csv(csv_bytes(kline_table(frame, pd.Timedelta("5m"), microseconds=True), header=False), "us.csv", "spot")
    header_rows = parse_csv(csv_bytes(table, header=True), "header.csv", "futures")
    assert (ms_rows == us_rows).all() and (ms_rows == header_rows).all()
    assert (ms_rows[:, 0] == frame.index.as_unit("ms").asi8).all() and (ms_rows[:, 1:] == frame.to_numpy()).all()
    inverse = parse_csv(csv_bytes(table, header=True), "cm.csv", "futures", inverse=True)
    assert (inverse[:, 5] == table.column("quote_volume").to_numpy()).all()  # COIN-M volume is column 8, as in ccxt


def test_only_binance_reads_an_archive():
    entry = {"market_type": "spot", "pairs": ["ETH/BTC"], "timeframes": ["5m"], "start": "2024-01-01"}
    assert UniverseEntry(exchange="binance", **entry).archive_url == "https://data.binance.vision"
    assert UniverseEntry(exchange="binance", archive_url=None, **entry).archive_url is None
    assert UniverseEntry(exchange="kraken", **entry).archive_url is None
    with pytest.raises(ValueError, match="kraken: archive_url is only read for binance"):
        UniverseEntry(exchange="kraken", archive_url="http://127.0.0.1:1", **entry)


# Backfills ------------------------------------------------------------------------------------------


def test_spot_backfill_of_a_closed_month_comes_from_the_archive_exactly(tmp_path, archive, rest, instance):
    root, base = archive
    for pair in SPOT_PAIRS:  # one pair in the microsecond files spot uses since 2025
        write_candles(root, "spot", market_id(pair), "5m", sample(pair), microseconds=pair == "XLM/BTC")
    rest.control(now_ms="2018-03-01T00:00:00Z")
    location = location_for(tmp_path, rest, base, spot(SPOT_PAIRS))
    result = location.ohlcv("binance_spot", instance, "2018-01-01", "2018-01-31")
    assert result.success, failure_message(result)
    for pair in SPOT_PAIRS:
        assert_same_candles(stored(location, pair), sample(pair))
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    assert meta["candles_from_archive"] == 57_546 and meta["candles_from_rest"] == 0
    assert rest.candles_served() == 0
    eth = [s for s in sources(meta) if s["pair"] == "ETH/BTC"]
    assert eth == [{"pair": "ETH/BTC", "timeframe": "5m", "type": "spot", "from": "2018-01-01T00:00:00+00:00",
                    "to": "2018-02-01T00:00:00+00:00", "source": "archive", "candles": 5760,
                    "detail": "data/spot/monthly/klines/ETHBTC/5m/ETHBTC-5m-2018-01.zip"}]
    archived = location.arctic.candle_metadata("binance", "spot", "ETH/BTC|5m|spot")["archive_files"]
    assert list(archived) == ["data/spot/monthly/klines/ETHBTC/5m/ETHBTC-5m-2018-01.zip"]


def test_missing_month_and_unpublished_days_come_from_rest(tmp_path, archive, rest, instance):
    root, base = archive
    write_candles(root, "spot", "ETHBTC", "5m", sample("ETH/BTC"), daily=True)
    # LTC/BTC has no files at all: its whole span is REST's.
    rest.control(now_ms="2018-01-20T12:00:00Z")
    location = location_for(tmp_path, rest, base, spot(["ETH/BTC", "LTC/BTC"]))
    result = location.ohlcv("binance_spot", instance, "2018-01-01", "2018-01-20")
    assert result.success, failure_message(result)
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    eth, ltc = sample("ETH/BTC"), sample("LTC/BTC")
    published = ts("2018-01-19")  # the 18th's daily file is out a day after the 19th began
    assert_same_candles(stored(location, "ETH/BTC")[:published - pd.Timedelta(1, "ns")], eth[:published - pd.Timedelta(1, "ns")])
    until = ts("2018-01-20 11:55")
    assert_same_candles(stored(location, "ETH/BTC")[published:], eth[published:until], exact=False)
    assert_same_candles(stored(location, "LTC/BTC"), ltc[:until], exact=False)
    rows = {(s["pair"], s["source"], s["from"], s["to"]): s for s in sources(meta)}
    # Days before the 10th have no file (the pair's history starts there): REST, which has nothing either.
    assert rows[("ETH/BTC", "rest", "2018-01-01T00:00:00+00:00", "2018-01-02T00:00:00+00:00")]["detail"] == \
        "missing: data/spot/daily/klines/ETHBTC/5m/ETHBTC-5m-2018-01-01.zip"
    archived = rows[("ETH/BTC", "archive", "2018-01-10T00:00:00+00:00", "2018-01-19T00:00:00+00:00")]
    assert archived["detail"].startswith("9 files: ") and archived["candles"] == len(eth[:published - pd.Timedelta(1, "ns")])
    assert rows[("ETH/BTC", "rest", "2018-01-19T00:00:00+00:00", "2018-01-20T12:00:00+00:00")]["detail"] == "day not archived yet"
    assert meta["candles_from_archive"] == archived["candles"]
    assert meta["candles_from_archive"] + meta["candles_from_rest"] == len(stored(location, "ETH/BTC")) + len(stored(location, "LTC/BTC"))


def test_futures_series_come_from_archive_files_with_header_rows(tmp_path, archive, rest, instance):
    root, base = archive
    pair, symbol = "XRP/USDT:USDT", "XRPUSDT"
    series = [(tf, "futures", "klines") for tf in ["5m", "1h"]] + [(tf, "mark", "markPriceKlines") for tf in ["1h", "8h"]]
    for tf, candle_type, kind in series:  # November as a monthly file, December's days as daily files
        frame = sample(pair, tf, candle_type)
        write_candles(root, "futures/um", symbol, tf, frame[:"2021-11"], kind=kind, header=True)
        write_candles(root, "futures/um", symbol, tf, frame["2021-12":], kind=kind, header=True, daily=True)
    funding = sample(pair, "8h", "funding_rate")
    write_funding(root, "futures/um", symbol, funding[:"2021-11"])
    rest.control(now_ms="2021-12-25T00:00:00Z")
    entry = {"exchange": "binance", "market_type": "futures", "pairs": [pair], "timeframes": ["5m", "1h"],
             "mark_timeframes": ["1h", "8h"], "funding_timeframes": ["8h"], "start": "2021-11-01", "end": "2021-12-19"}
    location = location_for(tmp_path, rest, base, entry)
    result = location.ohlcv("binance_futures", instance, "2021-11-01", "2021-12-18")
    assert result.success, failure_message(result)
    for tf in ["5m", "1h"]:
        assert_same_candles(stored(location, pair, tf, "futures", "futures"), sample(pair, tf, "futures"))
    for tf in ["1h", "8h"]:
        assert_same_candles(stored(location, pair, tf, "mark", "futures"), sample(pair, tf, "mark"))
    rates = stored(location, pair, "8h", "funding_rate", "futures")["funding_rate"]
    expected = funding["open"].rename("funding_rate")
    expected.index = expected.index.floor("s")
    # November from its archive file exactly; December from REST, which sends rates as 8-decimal strings.
    pd.testing.assert_series_equal(rates[:"2021-11"], expected[:"2021-11"], check_freq=False, check_names=False)
    pd.testing.assert_series_equal(rates["2021-12":], expected["2021-12":], check_freq=False, check_names=False,
                                   check_exact=False, rtol=0, atol=1e-8)
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_futures"]))
    december_funding = [s for s in sources(meta) if s["type"] == "funding_rate" and s["source"] == "rest"]
    assert [(s["from"], s["detail"], s["candles"]) for s in december_funding] == \
        [("2021-12-01T00:00:00+00:00", "month not archived yet", len(funding["2021-12":]))]
    assert meta["candles_from_rest"] == len(funding["2021-12":])


# Re-uploads and bad files ---------------------------------------------------------------------------


def backfill_eth(tmp_path, archive, rest, instance, now="2018-03-01T00:00:00Z"):
    root, base = archive
    path = write_candles(root, "spot", "ETHBTC", "5m", sample("ETH/BTC"))[0]
    rest.control(now_ms=now)
    location = location_for(tmp_path, rest, base, spot(["ETH/BTC"]))
    assert location.ohlcv("binance_spot", instance, "2018-01-01", "2018-01-31").success
    return location, root, path


@pytest.mark.parametrize("reupload", ["new content", "same content, new upload time"])
def test_a_reuploaded_file_is_missing_and_its_span_comes_from_rest(tmp_path, archive, rest, instance, reupload):
    location, root, path = backfill_eth(tmp_path, archive, rest, instance)
    recorded = location.arctic.candle_metadata("binance", "spot", "ETH/BTC|5m|spot")["archive_files"]
    if reupload == "new content":
        changed = sample("ETH/BTC") * 1.01
        write_file(root, path, csv_bytes(kline_table(changed, pd.Timedelta("5m")), header=False))
        reason = "re-uploaded (checksum changed)"
    else:
        later = time.time() + 86_400
        os.utime(root / path, (later, later))
        reason = "re-uploaded (ETag or Last-Modified changed)"
    result = location.ohlcv("binance_spot", instance, "2018-01-01", "2018-01-31", run_config={"refetch": True})
    assert result.success, failure_message(result)
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    assert sources(meta) == [{"pair": "ETH/BTC", "timeframe": "5m", "type": "spot", "from": "2018-01-01T00:00:00+00:00",
                              "to": "2018-02-01T00:00:00+00:00", "source": "rest", "candles": 5760,
                              "detail": f"{reason}: {path}"}]
    assert_same_candles(stored(location, "ETH/BTC"), sample("ETH/BTC"), exact=False)
    # The first record stays: later runs keep taking this span from REST.
    assert location.arctic.candle_metadata("binance", "spot", "ETH/BTC|5m|spot")["archive_files"] == recorded


def break_file(root, path, how):
    content = (root / path).read_bytes()
    if how == "corrupt zip":
        broken = content[:40] + b"\0" * 64 + content[104:]
        write_raw(root, path, broken)  # its checksum matches: the upload itself is broken
        return "corrupt zip"
    if how == "checksum mismatch":
        (root / f"{path}.CHECKSUM").write_text(f"{'0' * 64}  {path.rsplit('/', 1)[1]}\n")
        return "checksum mismatch"
    table = kline_table(sample("ETH/BTC")["2018-01-17":"2018-01-17"], pd.Timedelta("5m"))
    write_file(root, path, csv_bytes(table.drop_columns(["ignore"]), header=False))
    return "not a CSV of 12 numeric columns"


@pytest.mark.parametrize("how", ["corrupt zip", "checksum mismatch", "wrong column count"])
def test_a_bad_archive_file_fails_naming_it_and_leaves_the_store_unchanged(tmp_path, archive, rest, instance, how):
    root, base = archive
    write_candles(root, "spot", "ETHBTC", "5m", sample("ETH/BTC"), daily=True)
    rest.control(now_ms="2018-01-17T06:00:00Z")
    location = location_for(tmp_path, rest, base, spot(["ETH/BTC"]))
    assert location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-16").success
    symbol = "ETH/BTC|5m|spot"
    before = (location.arctic.candle_version("binance", "spot", symbol), stored(location, "ETH/BTC"))
    assert before[1].index[-1] == ts("2018-01-16 23:55")  # the 16th from REST: its file is not out yet

    path = klines_path("spot", "2018-01-17", "ETHBTC", "5m")
    problem = break_file(root, path, how)
    rest.control(now_ms="2018-01-20T00:00:00Z")
    result = location.ohlcv("binance_spot", instance, "2018-01-16", "2018-01-19")
    assert not result.success
    message = failure_message(result)
    assert f"{base}/{path}" in message and problem in message, message
    assert location.arctic.candle_version("binance", "spot", symbol) == before[0]
    pd.testing.assert_frame_equal(stored(location, "ETH/BTC"), before[1])


def test_the_sample_import_never_calls_the_archive(tmp_path, rest, instance):
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: any archive call would fail the run
    entry = {**spot(["ETH/BTC", "LTC/BTC"], start="2018-01-10", end="2018-01-31"), "import_dir": str(SAMPLE_DATA)}
    location = location_for(tmp_path, rest, nowhere, entry)
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert result.success, failure_message(result)
    meta = materialization_metadata(result, ohlcv_key(location.entries["binance_spot"]))
    assert "sources" not in meta and meta["source"].startswith("import ")
    assert_same_candles(stored(location, "ETH/BTC"), sample("ETH/BTC"))
