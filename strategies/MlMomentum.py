"""A model strategy: gradient-boosted trees forecast whether the price is higher 12 candles ahead, from
returns over several horizons, RSI, volatility, candle range, distance from the mean and volume."""

import numpy as np
import pandas as pd
from pandas import DataFrame
from sklearn.ensemble import HistGradientBoostingClassifier

from tradai_core.model_strategy import ModelStrategy

HORIZON = 12  # candles the label looks ahead; model_settings.label_horizon says the same


class MlMomentum(ModelStrategy):
    """Buys when the champion model gives a rise over the next hour a high probability; sells when the
    probability falls back, or on ROI or stoploss."""

    category = "model"
    timeframe = "5m"
    can_short = False
    process_only_new_candles = True
    # Every feature looks back at most 48 candles: identical values in training, backtests and bots.
    startup_candle_count = 50
    minimal_roi = {"0": 0.02, "30": 0.01, "90": 0.0}
    stoploss = -0.04

    model_settings = {
        "label_horizon": 12,
        "folds": 4,
        "seed": 42,
        "holdout_days": 7,
        "min_rows": 2000,
        "drift_window_days": 7,
        "retrain_cron": "0 3 * * 0",
    }
    entry_threshold = 0.55
    exit_threshold = 0.45

    def version(self) -> str:
        return "1.0"

    @staticmethod
    def features(candles: DataFrame) -> DataFrame:
        close = candles["close"]
        log_close = np.log(close)
        step = log_close.diff()
        out = pd.DataFrame(index=candles.index)
        for n in (1, 3, 6, 12, 36):
            out[f"ret_{n}"] = log_close.diff(n)
        gain = step.clip(lower=0).rolling(14).mean()
        loss = (-step).clip(lower=0).rolling(14).mean()
        moved = gain + loss
        # RSI from simple means (a bounded look-back; Wilder's smoothing would depend on all history).
        out["rsi_14"] = (100 * gain / moved).where(moved > 0, 50.0).where(moved.notna())
        out["volatility_24"] = step.rolling(24).std()
        out["range"] = (candles["high"] - candles["low"]) / close
        out["close_sma_48"] = close / close.rolling(48).mean() - 1
        log_volume = np.log1p(candles["volume"])
        mean, spread = log_volume.rolling(48).mean(), log_volume.rolling(48).std()
        out["volume_z_48"] = ((log_volume - mean) / spread).where(spread > 0, 0.0).where(spread.notna())
        return out

    @staticmethod
    def label(candles: DataFrame) -> pd.Series:
        ahead = candles["close"].shift(-HORIZON) / candles["close"] - 1
        return (ahead > 0).astype("float64").where(ahead.notna())

    @staticmethod
    def estimator(seed: int):
        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=100,
            l2_regularization=1.0, early_stopping=False, random_state=seed,
        )

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["prediction"] > self.entry_threshold) & (dataframe["volume"] > 0),
            ["enter_long", "enter_tag"],
        ] = (1, "model")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["prediction"] < self.exit_threshold) & (dataframe["volume"] > 0),
            ["exit_long", "exit_tag"],
        ] = (1, "model")
        return dataframe
