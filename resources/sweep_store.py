"""Sweeps in ArcticDB: each sweep's plan, one symbol per trial result and the ranked summary.

Library ``sweeps``: ``<sweep_id>|plan`` (the spec, the searched dimensions, the pinned inputs and,
for grid and random searches, every trial's parameters), ``<sweep_id>|trial|<nnnn>`` (one trial's
result: status, parameters, objectives, metrics, lineage; a re-run writes a new version) and
``<sweep_id>|summary`` (the ranked trials), and ``<sweep_id>|cancelled`` once someone cancelled the
sweep (who, when): the sweep sensor launches nothing more of it and its trials refuse to run. Every trial writes only its own symbol, so the trials of
a sweep run in parallel safely; the plan is written once.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd
from dagster import ConfigurableResource

from resources.arctic import ArcticStore

SWEEP_LIBRARY = "sweeps"


class SweepExistsError(ValueError):
    """A sweep id that is already taken."""


class SweepStore(ConfigurableResource):
    arctic: ArcticStore

    def _lib(self):
        return self.arctic.library(SWEEP_LIBRARY)

    def write_plan(self, sweep_id: str, plan: dict[str, Any]) -> None:
        lib = self._lib()
        if lib.has_symbol(f"{sweep_id}|plan"):
            raise SweepExistsError(f"sweep_id {sweep_id!r} is taken by an earlier sweep; choose another")
        lib.write_pickle(f"{sweep_id}|plan", json.dumps(plan, sort_keys=True))

    def plan(self, sweep_id: str) -> dict[str, Any] | None:
        lib = self._lib()
        if not lib.has_symbol(f"{sweep_id}|plan"):
            return None
        return json.loads(lib.read(f"{sweep_id}|plan").data)

    def sweep_ids(self) -> list[str]:
        return sorted(s.removesuffix("|plan") for s in self._lib().list_symbols(regex=r"\|plan$"))

    def write_cancellation(self, sweep_id: str, by: str, at: str) -> dict[str, Any]:
        """Marks the sweep cancelled (the first mark stays); answers the mark."""
        earlier = self.cancellation(sweep_id)
        if earlier is not None:
            return earlier
        mark = {"by": by, "at": at}
        self._lib().write_pickle(f"{sweep_id}|cancelled", json.dumps(mark))
        return mark

    def cancellation(self, sweep_id: str) -> dict[str, Any] | None:
        lib = self._lib()
        if not lib.has_symbol(f"{sweep_id}|cancelled"):
            return None
        return json.loads(lib.read(f"{sweep_id}|cancelled").data)

    def write_trial(self, sweep_id: str, number: int, result: dict[str, Any]) -> None:
        self._lib().write_pickle(f"{sweep_id}|trial|{number:04d}", json.dumps(result, sort_keys=True))

    def trials(self, sweep_id: str) -> list[dict[str, Any]]:
        """The latest result of every trial that has one, by trial number."""
        lib = self._lib()
        symbols = sorted(lib.list_symbols(regex=rf"^{re.escape(sweep_id)}\|trial\|"))
        return [json.loads(lib.read(s).data) for s in symbols]

    def write_summary(self, sweep_id: str, ranked: pd.DataFrame, summary: dict[str, Any]) -> int:
        """The ranked trials (as JSON records: parameter columns mix types) and the summary's figures."""
        records = json.loads(ranked.to_json(orient="records"))
        item = self._lib().write_pickle(f"{sweep_id}|summary", json.dumps(records), metadata=summary)
        return item.version

    def summary(self, sweep_id: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        lib = self._lib()
        if not lib.has_symbol(f"{sweep_id}|summary"):
            return None
        item = lib.read(f"{sweep_id}|summary")
        return pd.DataFrame(json.loads(item.data)), item.metadata
