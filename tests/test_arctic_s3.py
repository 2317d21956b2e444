"""The same candle and snapshot code against ArcticDB on S3, served by a moto server on 127.0.0.1."""

import uuid

import pandas as pd

from resources.arctic import ArcticStore
from tests.market_data_support import SAMPLE, SAMPLE_DATA, MarketDataLocation, check_results, write_universe
from tradai_core.candles import candle_symbol


def test_sample_import_and_snapshot_on_s3(moto, tmp_path, instance):
    bucket = f"tradai-arcticdb-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    arctic = ArcticStore(uri=moto.arctic_uri(bucket))
    entry = {
        "exchange": "binance", "market_type": "spot", "pairs": ["ADA/BTC", "ETH/BTC"], "timeframes": ["5m"],
        "start": "2018-01-10", "end": "2018-01-31", "import_dir": str(SAMPLE_DATA),
        "markets_file": str(SAMPLE / "markets" / "binance-spot.json"),
    }
    location = MarketDataLocation(write_universe(tmp_path / "u.yaml", [entry]), arctic)
    assert location.markets("binance_spot", instance).success
    result = location.ohlcv("binance_spot", instance, "2018-01-10", "2018-01-30")
    assert result.success
    assert check_results(result)["no_missing_candles"].metadata["missing_candles"].value == 40

    ada = arctic.read_candles("binance", "spot", candle_symbol("ADA/BTC", "5m", "spot"))
    source = pd.read_feather(SAMPLE_DATA / "ADA_BTC-5m.feather").set_index("date")
    pd.testing.assert_frame_equal(ada, source, check_freq=False, check_names=False)
    keys = [o["Key"] for o in moto.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys, "nothing was written to the bucket"
    assert arctic.latest_markets_snapshot("binance", "spot").payload["markets"]["ADA/BTC"]["precision"]["price"] == 1e-08
