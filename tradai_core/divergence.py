"""Matching a bot's trades with the replay of its strategy over the same candles, trade by trade.

Both sides come as frames of one row per trade with the columns of ``TRADE_COLUMNS``: the pair, the
entry and exit times (the fill of the first entry order and of the closing exit order for a bot; the
candle open Freqtrade's backtest enters and exits at for the replay), rates, amount, fee costs,
profit, and whether the trade is still open (the replay's trades force-closed at its end count as
open: their exit says nothing). Times are UTC.

A bot trade and a replay trade match when they are on the same pair and their entry candles lie at
most ``tolerance_candles`` apart; among candidates the nearest entry wins, ties to the earlier one.
A matched trade is *aligned* when its entry and (both sides closed) exit fall on the same candle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRADE_COLUMNS = (
    "trade_id",
    "pair",
    "is_short",
    "entry_time",
    "exit_time",
    "open_rate",
    "close_rate",
    "amount",
    "fee_cost",
    "profit_abs",
    "is_open",
)
MATCH_COLUMNS = (
    "status",
    "pair",
    "bot_trade_id",
    "replay_trade_id",
    "bot_entry",
    "replay_entry",
    "entry_diff_candles",
    "bot_exit",
    "replay_exit",
    "exit_diff_candles",
    "entry_slippage_bps",
    "exit_slippage_bps",
    "fee_diff",
    "bot_profit",
    "replay_profit",
    "profit_gap",
    "aligned",
)
MATCHED, BOT_ONLY, REPLAY_ONLY = "matched", "bot_only", "replay_only"


class TradeFrameError(ValueError):
    """A trade frame without the columns the matching needs; the message names them."""


def check_trades(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    missing = [c for c in TRADE_COLUMNS if c not in frame.columns]
    if missing:
        raise TradeFrameError(f"{side} trades lack column(s) {', '.join(missing)}")
    out = frame.loc[:, list(TRADE_COLUMNS)].copy()
    for column in ("entry_time", "exit_time"):
        out[column] = pd.to_datetime(out[column], utc=True)
    return out.reset_index(drop=True)


def _candles(later: pd.Timestamp, earlier: pd.Timestamp, step: pd.Timedelta) -> float:
    if pd.isna(later) or pd.isna(earlier):
        return float("nan")
    return float((later.floor(step) - earlier.floor(step)) / step)


def _bps(paid: float, reference: float) -> float:
    if not reference or pd.isna(paid) or pd.isna(reference):
        return float("nan")
    return float((paid - reference) / reference * 10_000)


def match_trades(
    bot: pd.DataFrame, replay: pd.DataFrame, timeframe_step: pd.Timedelta, tolerance_candles: int = 1
) -> pd.DataFrame:
    """One row per matched pair of trades, then per trade of only one side (``MATCH_COLUMNS``).

    Differences are bot minus replay: a positive entry difference is a late bot entry; slippage is in
    basis points against the bot (paid more on entry, got less on exit, for longs and shorts alike);
    ``profit_gap`` is the bot's profit minus the replay's, for trades closed on both sides."""
    if tolerance_candles < 0:
        raise ValueError(f"tolerance_candles {tolerance_candles} must be >= 0")
    bot, replay = check_trades(bot, "bot"), check_trades(replay, "replay")
    candidates = []
    for b, brow in bot.iterrows():
        for r, rrow in replay[replay["pair"] == brow["pair"]].iterrows():
            distance = abs(_candles(brow["entry_time"], rrow["entry_time"], timeframe_step))
            if distance <= tolerance_candles:
                candidates.append((distance, brow["entry_time"], b, r))
    used_bot: set[int] = set()
    used_replay: set[int] = set()
    rows = []
    for _, _, b, r in sorted(candidates, key=lambda c: (c[0], c[1], c[2], c[3])):
        if b in used_bot or r in used_replay:
            continue
        used_bot.add(b)
        used_replay.add(r)
        rows.append(_matched_row(bot.loc[b], replay.loc[r], timeframe_step))
    rows += [_one_side_row(bot.loc[b], BOT_ONLY) for b in bot.index if b not in used_bot]
    rows += [_one_side_row(replay.loc[r], REPLAY_ONLY) for r in replay.index if r not in used_replay]
    frame = pd.DataFrame(rows, columns=list(MATCH_COLUMNS))
    if frame.empty:
        return frame
    frame["_entry"] = frame["bot_entry"].fillna(frame["replay_entry"])
    return frame.sort_values(["_entry", "pair", "status"]).drop(columns="_entry").reset_index(drop=True)


def _matched_row(b: pd.Series, r: pd.Series, step: pd.Timedelta) -> dict:
    sign = -1.0 if bool(b["is_short"]) else 1.0
    both_closed = not bool(b["is_open"]) and not bool(r["is_open"])
    entry_diff = _candles(b["entry_time"], r["entry_time"], step)
    exit_diff = _candles(b["exit_time"], r["exit_time"], step) if both_closed else float("nan")
    return {
        "status": MATCHED,
        "pair": b["pair"],
        "bot_trade_id": b["trade_id"],
        "replay_trade_id": r["trade_id"],
        "bot_entry": b["entry_time"],
        "replay_entry": r["entry_time"],
        "entry_diff_candles": entry_diff,
        "bot_exit": b["exit_time"],
        "replay_exit": r["exit_time"],
        "exit_diff_candles": exit_diff,
        "entry_slippage_bps": sign * _bps(b["open_rate"], r["open_rate"]),
        "exit_slippage_bps": -sign * _bps(b["close_rate"], r["close_rate"]) if both_closed else float("nan"),
        "fee_diff": float(b["fee_cost"] - r["fee_cost"]) if both_closed else float("nan"),
        "bot_profit": float(b["profit_abs"]) if not b["is_open"] else float("nan"),
        "replay_profit": float(r["profit_abs"]) if not r["is_open"] else float("nan"),
        "profit_gap": float(b["profit_abs"] - r["profit_abs"]) if both_closed else float("nan"),
        "aligned": entry_diff == 0 and (not both_closed or exit_diff == 0),
    }


def _one_side_row(t: pd.Series, status: str) -> dict:
    row = dict.fromkeys(MATCH_COLUMNS, float("nan"))
    prefix = "bot" if status == BOT_ONLY else "replay"
    row.update(
        {
            "status": status,
            "pair": t["pair"],
            f"{prefix}_trade_id": t["trade_id"],
            f"{prefix}_entry": t["entry_time"],
            f"{prefix}_exit": t["exit_time"],
            f"{prefix}_profit": float(t["profit_abs"]) if not t["is_open"] else float("nan"),
            "aligned": False,
        }
    )
    other = "replay" if prefix == "bot" else "bot"
    for column in (f"{other}_entry", f"{other}_exit"):
        row[column] = pd.NaT
    return row


@dataclass(frozen=True)
class DivergenceSummary:
    bot_trades: int
    replay_trades: int
    matched: int
    aligned: int
    bot_only: int
    replay_only: int
    mean_abs_slippage_bps: float
    max_abs_slippage_bps: float
    bot_profit: float
    replay_profit: float

    @property
    def trades(self) -> int:
        """Every trade of either side, a matched pair counted once."""
        return self.matched + self.bot_only + self.replay_only

    @property
    def matched_share(self) -> float:
        return self.matched / self.trades if self.trades else 1.0

    @property
    def aligned_share(self) -> float:
        """Share of trades matched with entry and exit on the same candle."""
        return self.aligned / self.trades if self.trades else 1.0

    @property
    def divergent_share(self) -> float:
        """What the thresholds judge: the share of trades not aligned (one-sided or off by a candle)."""
        return 1.0 - self.aligned_share

    @property
    def profit_gap(self) -> float:
        return self.bot_profit - self.replay_profit

    def as_dict(self) -> dict[str, float | int]:
        return {
            "bot_trades": self.bot_trades,
            "replay_trades": self.replay_trades,
            "matched": self.matched,
            "aligned": self.aligned,
            "bot_only": self.bot_only,
            "replay_only": self.replay_only,
            "matched_share": self.matched_share,
            "aligned_share": self.aligned_share,
            "divergent_share": self.divergent_share,
            "mean_abs_slippage_bps": self.mean_abs_slippage_bps,
            "max_abs_slippage_bps": self.max_abs_slippage_bps,
            "bot_profit": self.bot_profit,
            "replay_profit": self.replay_profit,
            "profit_gap": self.profit_gap,
        }


def summarise(matched: pd.DataFrame) -> DivergenceSummary:
    """Counts, slippage (over every matched fill, entries and exits) and profits (closed trades)."""
    status = matched["status"] if not matched.empty else pd.Series([], dtype=object)
    slippage = np.abs(
        pd.concat(
            [
                matched.get("entry_slippage_bps", pd.Series(dtype=float)),
                matched.get("exit_slippage_bps", pd.Series(dtype=float)),
            ]
        )
        .dropna()
        .to_numpy(float)
    )
    return DivergenceSummary(
        bot_trades=int((status != REPLAY_ONLY).sum()),
        replay_trades=int((status != BOT_ONLY).sum()),
        matched=int((status == MATCHED).sum()),
        aligned=int(matched["aligned"].astype(bool).sum()) if not matched.empty else 0,
        bot_only=int((status == BOT_ONLY).sum()),
        replay_only=int((status == REPLAY_ONLY).sum()),
        mean_abs_slippage_bps=float(slippage.mean()) if slippage.size else 0.0,
        max_abs_slippage_bps=float(slippage.max()) if slippage.size else 0.0,
        bot_profit=float(matched["bot_profit"].sum()) if not matched.empty else 0.0,
        replay_profit=float(matched["replay_profit"].sum()) if not matched.empty else 0.0,
    )


def divergent_trades(matched: pd.DataFrame) -> list[str]:
    """One sentence per trade that is not aligned, naming its pair, side and times."""
    out = []
    for row in matched[~matched["aligned"].astype(bool)].itertuples(index=False):
        if row.status == BOT_ONLY:
            out.append(
                f"{row.pair}: bot trade {row.bot_trade_id} entered {row.bot_entry:%Y-%m-%d %H:%M} UTC, "
                "none in the replay"
            )
        elif row.status == REPLAY_ONLY:
            out.append(f"{row.pair}: replay entered {row.replay_entry:%Y-%m-%d %H:%M} UTC, the bot did not")
        else:
            parts = []
            if row.entry_diff_candles:
                parts.append(
                    f"entry {row.entry_diff_candles:+.0f} candle(s) ({row.bot_entry:%H:%M:%S} against "
                    f"{row.replay_entry:%H:%M})"
                )
            if row.exit_diff_candles and not pd.isna(row.exit_diff_candles):
                parts.append(
                    f"exit {row.exit_diff_candles:+.0f} candle(s) ({row.bot_exit:%H:%M:%S} against "
                    f"{row.replay_exit:%H:%M})"
                )
            out.append(f"{row.pair}: bot trade {row.bot_trade_id} " + ", ".join(parts))
    return out
