"""Optuna studies of TPE and NSGA-II sweeps, kept in the platform's database so that every worker
run (a local process or an ECS task) asks and tells the same study.

Locally the database is a SQLite file under ``$TRADAI_HOME``; on AWS the stack's PostgreSQL. The
sampler is not stored in the database: each worker builds it from the sweep's seed and the trial's
number, and the sampler reads the shared history from the study.
"""

from __future__ import annotations

import functools
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from tradai_core.sweeps import Dimension

PARTITION_ATTR = "tradai_trial_key"


@functools.cache
def _storage(url: str):
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def distribution(dim: Dimension):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dim.choices is not None:
        return CategoricalDistribution(list(dim.choices))
    if dim.kind == "int":
        return IntDistribution(int(dim.low), int(dim.high))
    if dim.kind == "decimal":
        return FloatDistribution(dim.low, dim.high, step=10**-dim.decimals)
    return FloatDistribution(dim.low, dim.high)


class SweepStudies(ConfigurableResource):
    storage_url: str = Field(description="Optuna's RDB storage URL (sqlite:///... locally, postgresql://... on AWS)")

    def _sampler(self, search: str, seed: int, number: int, budget: int):
        import optuna

        seed = seed * 1_000_003 + number  # workers asking at once must not draw the same values
        if search == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, budget // 4)))
        if search == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(2, budget // 4)))
        raise ValueError(f"no Optuna sampler for search {search!r}")

    def _study(self, sweep_id: str, search: str, seed: int, number: int, budget: int):
        import optuna

        return optuna.load_study(
            study_name=sweep_id, storage=_storage(self.storage_url), sampler=self._sampler(search, seed, number, budget)
        )

    def create(self, sweep_id: str, directions: list[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.create_study(study_name=sweep_id, storage=_storage(self.storage_url), directions=directions)

    def ask(
        self, sweep_id: str, key: str, number: int, dims: list[Dimension], search: str, seed: int, budget: int
    ) -> tuple[dict[str, Any], int | None]:
        """Parameters for the trial ``key``: the values an earlier attempt at it was given (a re-run
        evaluates the same point), else the sampler's next point. Returns (params, optuna trial
        number to tell, or None when the point is told as a new trial later)."""
        study = self._study(sweep_id, search, seed, number, budget)
        earlier = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(PARTITION_ATTR) == key]
        if earlier:
            return dict(earlier[-1].params), None
        trial = study.ask({d.name: distribution(d) for d in dims})
        trial.set_user_attr(PARTITION_ATTR, key)
        return dict(trial.params), trial.number

    def tell(
        self,
        sweep_id: str,
        key: str,
        optuna_number: int | None,
        params: dict[str, Any],
        dims: list[Dimension],
        values: list[float] | None,
    ) -> None:
        """The outcome of a trial: its objective values, or None (failed, too few trades)."""
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=sweep_id, storage=_storage(self.storage_url))
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        if optuna_number is not None:
            study.tell(optuna_number, values if values is not None else None, state=state)
            return
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={d.name: distribution(d) for d in dims},
                values=values,
                state=state,
                user_attrs={PARTITION_ATTR: key},
            )
        )

    def trial_count(self, sweep_id: str) -> int:
        import optuna

        return len(optuna.load_study(study_name=sweep_id, storage=_storage(self.storage_url)).trials)
