"""Write ever-new versions of one big candle window until killed (crash-recovery tests).

    python -m tests.write_forever ARCTIC_URI

Version n holds closes equal to n, so a reader can tell which write it sees and whether it is whole.
"""

import sys

import numpy as np
import pandas as pd

from resources.arctic import ArcticStore

ROWS = 1_000_000
START = pd.Timestamp("2024-01-01", tz="UTC")


def frame(n: int) -> pd.DataFrame:
    index = pd.date_range(START, periods=ROWS, freq="1min", tz="UTC", name="date")
    values = np.full(ROWS, float(n))
    return pd.DataFrame({"open": values, "high": values, "low": values, "close": values, "volume": values}, index=index)


def main(uri: str) -> None:
    store = ArcticStore(uri=uri, keep_versions=3)
    end = START + pd.Timedelta(minutes=ROWS)
    n = 1
    while True:
        print(f"writing {n}", flush=True)
        store.replace_window("binance", "spot", "BIG/USDT|1m|spot", frame(n), START, end, {"n": n})
        n += 1


if __name__ == "__main__":
    main(sys.argv[1])
