"""Reading 10 pairs x 1 year of 5m candles: ArcticDB (our store) over Freqtrade's own loader on feather.

    .venv/bin/python -m bench.read_candles [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import best_of, report, synthetic_candles
from resources.arctic import ArcticStore
from tradai_core.candles import candle_symbol

PAIRS = [f"C{i:02d}/USDT" for i in range(10)]
PERIODS = 365 * 288  # one year of 5m candles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-read-"))

    from freqtrade.data.history import load_data
    from freqtrade.enums import CandleType

    datadir = workdir / "feather"
    datadir.mkdir(parents=True, exist_ok=True)
    store = ArcticStore(uri=f"lmdb://{workdir / 'arctic'}")
    for i, pair in enumerate(PAIRS):
        frame = synthetic_candles(i, "2023-01-01", PERIODS, "5min")
        frame.reset_index().to_feather(datadir / f"{pair.replace('/', '_')}-5m.feather")
        store.replace_window("bench", "spot", candle_symbol(pair, "5m", "spot"), frame,
                             frame.index[0], frame.index[-1] + frame.index.freq, {})

    def read_arctic():
        return {p: store.read_candles("bench", "spot", candle_symbol(p, "5m", "spot")) for p in PAIRS}

    def read_freqtrade():
        return load_data(datadir, "5m", PAIRS, data_format="feather", candle_type=CandleType.SPOT, fill_up_missing=False)

    ours = read_arctic()
    theirs = read_freqtrade()
    assert all(len(ours[p]) == len(theirs[p]) == PERIODS for p in PAIRS)
    arctic_best, arctic_all = best_of(read_arctic, args.repeat)
    freqtrade_best, freqtrade_all = best_of(read_freqtrade, args.repeat)
    rows = PERIODS * len(PAIRS)
    print(report(
        "Reading candles: ArcticDB over Freqtrade's load_data (goal <= 0.5)",
        "python -m bench.read_candles",
        [
            f"10 pairs x 1 year of 5m candles ({rows:,} rows), best of {args.repeat} in one process",
            f"ArcticDB (LMDB) read of all 10 symbols over `freqtrade.data.history.load_data` on the same candles in feather: "
            f"**{arctic_best / freqtrade_best:.3f}**",
            f"ArcticDB reads {rows / arctic_best / 1e6:.1f}M rows/s; all runs (s): ArcticDB "
            f"{', '.join(f'{t:.3f}' for t in arctic_all)}; Freqtrade {', '.join(f'{t:.3f}' for t in freqtrade_all)}",
        ],
    ))


if __name__ == "__main__":
    main()
