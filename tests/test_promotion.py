"""Champion and challenger on synthetic trades from models of known quality."""

import json

import numpy as np
import pytest

from tradai_core.promotion import PromotionPolicy, decide, max_drawdown, trade_metrics

FEE = 0.001


def model_trades(rng: np.random.Generator, prediction_noise: float, threshold: float, candles: int = 600) -> np.ndarray:
    """Per-trade returns of a model that goes long when its forecast of the next return beats ``threshold``.

    The next return is the known signal; a model's forecast is that signal plus noise, so the less noise,
    the better the model."""
    next_return = rng.normal(0, 0.01, candles)
    forecast = next_return + rng.normal(0, prediction_noise, candles)
    return next_return[forecast > threshold] - FEE


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.fixture
def champion(rng):
    return model_trades(rng, prediction_noise=0.02, threshold=0.005)


def test_a_truly_better_challenger_is_promoted(rng, champion):
    challenger = model_trades(rng, prediction_noise=0.005, threshold=0.005)
    decision = decide(champion, challenger)
    assert decision.outcome == "promote"
    assert decision.p_value < 1e-6
    assert decision.challenger.mean_return > decision.champion.mean_return
    assert decision.champion.trades >= 30 and decision.challenger.trades >= 30
    assert "p = " in decision.reasons[0]


def test_a_worse_challenger_is_kept_out(rng, champion):
    challenger = model_trades(rng, prediction_noise=0.05, threshold=0.005)
    decision = decide(champion, challenger)
    assert decision.outcome == "keep"
    assert decision.p_value > 0.5
    assert any("not significantly greater" in reason for reason in decision.reasons)


def test_the_same_model_is_not_promoted_by_chance():
    promoted = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        same = model_trades(rng, 0.02, 0.005), model_trades(rng, 0.02, 0.005)
        promoted += decide(*same).outcome == "promote"
    assert promoted <= 6  # alpha 0.05 over 40 trials: about 2 expected


def test_too_few_trades_is_inconclusive_even_when_better(rng, champion):
    challenger = model_trades(rng, prediction_noise=0.005, threshold=0.02)  # rarely confident enough to trade
    assert 2 <= len(challenger) < 30
    decision = decide(champion, challenger)
    assert decision.outcome == "inconclusive"
    assert decision.reasons == (f"challenger has {len(challenger)} trades, fewer than 30",)
    assert decision.p_value is not None  # still recorded


def test_minimum_trades_is_configurable(rng, champion):
    challenger = model_trades(rng, prediction_noise=0.005, threshold=0.02)
    assert decide(champion, challenger, PromotionPolicy(min_trades=len(challenger))).outcome == "promote"
    assert decide(champion, challenger[:1], PromotionPolicy(min_trades=2)).p_value is None


def test_a_better_mean_with_a_deeper_drawdown_beyond_tolerance_is_kept(rng, champion):
    challenger = model_trades(rng, prediction_noise=0.005, threshold=0.005)
    # Still better on average, but with a streak of ten 3% losses.
    losing_streak = np.concatenate([challenger[:50], np.full(10, -0.03), challenger[50:]])
    decision = decide(champion, losing_streak)
    assert decision.p_value < 0.01
    assert decision.challenger.max_drawdown > decision.champion.max_drawdown + 0.02
    assert decision.outcome == "keep"
    assert decision.reasons == (
        f"challenger's max drawdown {decision.challenger.max_drawdown:.2%} exceeds the champion's "
        f"{decision.champion.max_drawdown:.2%} by more than 2.00%",
    )
    loose = PromotionPolicy(drawdown_tolerance=decision.challenger.max_drawdown - decision.champion.max_drawdown)
    assert decide(champion, losing_streak, loose).outcome == "promote"


def test_max_drawdown_by_hand():
    assert max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(0.5)  # 1.1 -> 0.55
    assert max_drawdown(np.array([-0.1, 0.05])) == pytest.approx(0.1)  # from the starting 1.0
    assert max_drawdown(np.array([0.1, 0.1])) == 0.0
    assert max_drawdown(np.array([])) == 0.0


def test_metrics_and_record_are_plain_json():
    metrics = trade_metrics(np.array([0.1, -0.05, 0.02]))
    assert metrics.trades == 3 and metrics.win_rate == pytest.approx(2 / 3)
    assert metrics.total_return == pytest.approx(1.1 * 0.95 * 1.02 - 1)
    record = decide(np.full(30, 0.01), np.full(30, 0.02)).to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["outcome"] == "keep" and record["p_value"] is None
    assert record["reasons"] == ["both sides' returns are constant: the test is undefined"]
    assert record["policy"] == {"min_trades": 30, "alpha": 0.05, "drawdown_tolerance": 0.02}
    assert record["test"] == "welch_t_one_sided_greater"


def test_bad_returns_are_refused(champion):
    with pytest.raises(ValueError, match="challenger per-trade returns have 1 NaN or infinite value.*trade 3"):
        decide(champion, [0.01, 0.02, 0.0, np.nan])
    with pytest.raises(ValueError, match="champion per-trade return -1.5 at trade 1 loses the whole stake"):
        decide([0.01, -1.5], champion)
    with pytest.raises(ValueError, match="one-dimensional"):
        decide(champion, [[0.01]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_trades": 1}, "min_trades"), ({"alpha": 0.0}, "alpha"), ({"drawdown_tolerance": -0.1}, "drawdown_tolerance")],
)
def test_bad_policies_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromotionPolicy(**kwargs)
