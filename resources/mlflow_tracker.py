"""MLflow: one run per backtest, in one experiment per strategy.

Runs are written through ``MlflowClient`` (no process-global active run), so parallel backtests in one
process or many never mix. Params, metrics and tags go in one ``log_batch``; artifacts in one
``log_artifacts`` of a directory.
"""

from __future__ import annotations

import fcntl
import functools
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field


@functools.cache
def initialise_sqlite_store(tracking_uri: str) -> None:
    """Create (or migrate) a SQLite tracking store under a file lock, once per process.

    MLflow builds a new SQLite store's tables on first use, and two processes doing that at once
    (parallel backtests on a fresh store, or ``mlflow server`` beside a sensor) collide on the schema
    migration. ``make dev`` calls this before it starts any server."""
    from mlflow import MlflowClient

    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)


def experiment_id(client, name: str, artifact_root: str | None) -> str:
    """The id of the experiment ``name``, created (artifacts under ``artifact_root``/name) when missing."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None if artifact_root is None else f"{artifact_root.rstrip('/')}/{name}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        # Another run of the same strategy created it first.
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


class MlflowTracker(ConfigurableResource):
    tracking_uri: str = Field(description="MLflow tracking URI, e.g. sqlite:///.tradai/mlflow.db or http://host:5000")
    artifact_root: str | None = Field(
        default=None,
        description="Where new experiments keep artifacts (local stores); the server decides when None.",
    )
    ui_url: str = Field(default="http://127.0.0.1:5000", description="Base URL of the MLflow UI, for links.")

    def _client(self):
        from mlflow import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            initialise_sqlite_store(self.tracking_uri)
        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        return experiment_id(self._client(), name, self.artifact_root)

    def log_run(
        self,
        experiment: str,
        run_name: str,
        params: dict[str, str],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifact_dir: Path,
    ) -> str:
        """One finished run with everything in it; returns its id."""
        from mlflow.entities import Metric, Param

        client = self._client()
        run = client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        run_id = run.info.run_id
        try:
            now = run.info.start_time
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in params.items()],
            )
            client.log_artifacts(run_id, str(artifact_dir))
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        return run_id

    def start_run(self, experiment: str, run_name: str, params: dict[str, str], tags: dict[str, str]) -> str:
        """A run that stays open (a sweep's parent run) until ``finish_run``; returns its id."""
        from mlflow.entities import Param

        client = self._client()
        run = client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def finish_run(self, run_id: str, metrics: dict[str, float], tags: dict[str, str], artifact_dir: Path) -> None:
        """Metrics, tags and artifacts of an open run, then close it (again, when a sweep's summary is redone)."""
        from mlflow.entities import Metric, RunTag

        client = self._client()
        now = client.get_run(run_id).info.start_time
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.log_artifacts(run_id, str(artifact_dir))
        client.set_terminated(run_id)

    def child_runs(self, experiment: str, parent_run_id: str) -> list[dict[str, Any]]:
        """The runs whose parent is ``parent_run_id``: id, params, metrics and tags."""
        client = self._client()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return [
            {"run_id": r.info.run_id, "params": dict(r.data.params), "metrics": dict(r.data.metrics),
             "tags": dict(r.data.tags), "status": r.info.status}
            for r in client.search_runs([found.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                        max_results=10_000)
        ]

    def probe(self) -> int:
        """Ask the store for its first experiment: how many came back (0 or 1); raises when it does not answer."""
        return len(self._client().search_experiments(max_results=1))

    def run_url(self, run_id: str) -> str:
        run = self._client().get_run(run_id)
        return f"{self.ui_url.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def run_record(self, run_id: str) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
        """Params, tags and metrics of a run."""
        data = self._client().get_run(run_id).data
        return dict(data.params), dict(data.tags), dict(data.metrics)

    def download(self, run_id: str, path: str, destination: Path) -> Path:
        return Path(self._client().download_artifacts(run_id, path, str(destination)))

    def runs(self, experiment: str) -> list[dict[str, Any]]:
        """Every run of an experiment, newest first: id, params and tags."""
        client = self._client()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return [
            {"run_id": r.info.run_id, "params": dict(r.data.params), "tags": dict(r.data.tags)}
            for r in client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])
        ]
