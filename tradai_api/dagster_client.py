"""Dagster's GraphQL API of the running webserver, over plain httpx.

Runs are launched through the webserver, so the instance's run coordinator and run launcher apply
(the local queue and processes, or ECS tasks in AWS). Importing ``dagster`` here would cost seconds
at start-up and is not needed: this module speaks the documented GraphQL schema only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import httpx

# Only the metadata types the API reads; Markdown entries (a backtest's embedded equity PNG) are large.
METADATA_FIELDS = """
  __typename label
  ... on FloatMetadataEntry { floatRepr }
  ... on IntMetadataEntry { intRepr }
  ... on TextMetadataEntry { text }
  ... on UrlMetadataEntry { url }
  ... on JsonMetadataEntry { jsonString }
  ... on BoolMetadataEntry { boolValue }
"""

RUN_FIELDS = "runId jobName status creationTime startTime endTime runConfigYaml tags { key value }"

FINISHED_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
# Dagster's job over every asset of a repository, which the UI's Materialize button runs with a selection.
IMPLICIT_ASSET_JOB = "__ASSET_JOB"


class DagsterUnavailable(RuntimeError):
    """The webserver does not answer (503)."""


class DagsterError(RuntimeError):
    """The webserver answered with an error (502 unless the caller knows better)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job_name: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    run_config_yaml: str
    tags: dict[str, str]

    @classmethod
    def from_graphql(cls, node: dict[str, Any]) -> "RunRecord":
        return cls(
            run_id=node["runId"],
            job_name=node["jobName"],
            status=node["status"],
            created_at=node["creationTime"],
            started_at=node.get("startTime"),
            finished_at=node.get("endTime"),
            run_config_yaml=node.get("runConfigYaml") or "",
            tags={t["key"]: t["value"] for t in node.get("tags", [])},
        )


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run reported: each step's output metadata and the failures' messages."""

    output_metadata: dict[str, dict[str, Any]]
    errors: list[str]


@dataclass(frozen=True)
class AssetNode:
    location: str
    repository: str
    op_names: tuple[str, ...]
    job_names: tuple[str, ...]


@dataclass(frozen=True)
class Materialization:
    run_id: str
    timestamp_ms: int
    metadata: dict[str, Any]


def metadata_values(entries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in entries:
        kind, label = entry["__typename"], entry["label"]
        if kind == "FloatMetadataEntry":
            out[label] = float(entry["floatRepr"])  # the repr keeps nan and inf, which JSON cannot
        elif kind == "IntMetadataEntry":
            out[label] = int(entry["intRepr"])
        elif kind == "TextMetadataEntry":
            out[label] = entry["text"]
        elif kind == "UrlMetadataEntry":
            out[label] = entry["url"]
        elif kind == "JsonMetadataEntry":
            out[label] = json.loads(entry["jsonString"])
        elif kind == "BoolMetadataEntry":
            out[label] = entry["boolValue"]
    return out


def error_message(error: dict[str, Any]) -> str:
    """Dagster prefixes a step's error with the exception's qualified class name: keep the message."""
    message = (error.get("message") or "").strip()
    head, sep, rest = message.partition(": ")
    if sep and head.endswith(error.get("className") or "\0") and " " not in head:
        return rest.strip()
    return message


class DagsterClient:
    def __init__(self, graphql_url: str, timeout: float = 15.0, transport: httpx.BaseTransport | None = None):
        self.graphql_url = graphql_url
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._locations: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    @property
    def ui_url(self) -> str:
        return self.graphql_url.removesuffix("/graphql")

    def query(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.post(self.graphql_url, json={"query": document, "variables": variables or {}})
        except httpx.HTTPError as exc:
            raise DagsterUnavailable(f"Dagster at {self.graphql_url} is unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise DagsterUnavailable(f"Dagster at {self.graphql_url} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise DagsterError(f"Dagster at {self.graphql_url} answered HTTP {response.status_code} without JSON") from exc
        if body.get("errors"):
            raise DagsterError("Dagster GraphQL error: " + "; ".join(e.get("message", "?") for e in body["errors"]))
        return body["data"]

    @staticmethod
    def _expect(result: dict[str, Any], typename: str, what: str) -> dict[str, Any]:
        if result["__typename"] != typename:
            detail = result.get("message") or result["__typename"]
            raise DagsterError(f"{what}: {detail}")
        return result

    def version(self) -> str:
        return self.query("{ version }")["version"]

    def job_location(self, job_name: str) -> tuple[str, str]:
        """(code location, repository) defining the job; remembered once found."""
        with self._lock:
            if job_name in self._locations:
                return self._locations[job_name]
        data = self.query(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries { name locationOrLoadError {
                 __typename ... on RepositoryLocation { name repositories { name jobs { name } } }
                 ... on PythonError { message } } } } ... on PythonError { message } } }"""
        )
        workspace = self._expect(data["workspaceOrError"], "Workspace", "reading the Dagster workspace")
        problems = []
        for entry in workspace["locationEntries"]:
            location = entry["locationOrLoadError"]
            if location is None:
                problems.append(f"code location {entry['name']} is loading")
                continue
            if location["__typename"] != "RepositoryLocation":
                problems.append(f"code location {entry['name']} failed to load: {location.get('message', '')[:300]}")
                continue
            for repository in location["repositories"]:
                if any(j["name"] == job_name for j in repository["jobs"]):
                    with self._lock:
                        self._locations[job_name] = (location["name"], repository["name"])
                    return location["name"], repository["name"]
        raise DagsterUnavailable(f"no loaded Dagster code location defines job {job_name}" + (f" ({'; '.join(problems)})" if problems else ""))

    def launch_run(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> RunRecord:
        location, repository = self.job_location(job_name)
        return self._launch({"repositoryLocationName": location, "repositoryName": repository, "jobName": job_name},
                            run_config, tags, job_name)

    def asset_node(self, asset_key: list[str]) -> AssetNode | None:
        """Where an asset is defined and by which op; None when no loaded code location defines it."""
        data = self.query(
            """query Node($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
                 ... on AssetNode { opNames jobNames repository { name location { name } } }
                 ... on AssetNotFoundError { message } } }""",
            {"key": {"path": asset_key}},
        )
        result = data["assetNodeOrError"]
        if result["__typename"] == "AssetNotFoundError":
            return None
        node = self._expect(result, "AssetNode", f"reading asset {'/'.join(asset_key)}")
        return AssetNode(
            location=node["repository"]["location"]["name"], repository=node["repository"]["name"],
            op_names=tuple(node["opNames"]), job_names=tuple(node["jobNames"]),
        )

    def launch_asset_run(
        self, asset_key: list[str], op_config: dict[str, Any] | None, tags: dict[str, str]
    ) -> RunRecord:
        """Materialise one asset, as the UI's Materialize button does (the implicit asset job with an
        asset selection), with ``op_config`` as the config of the asset's op."""
        node = self.asset_node(asset_key)
        what = "/".join(asset_key)
        if node is None:
            raise AssetNotFound(f"no loaded Dagster code location defines the asset {what}")
        job_name = IMPLICIT_ASSET_JOB if IMPLICIT_ASSET_JOB in node.job_names or not node.job_names else node.job_names[0]
        run_config = {"ops": {node.op_names[0]: {"config": op_config}}} if op_config is not None and node.op_names else {}
        selector = {
            "repositoryLocationName": node.location, "repositoryName": node.repository, "jobName": job_name,
            "assetSelection": [{"path": asset_key}],
        }
        return self._launch(selector, run_config, tags, f"{job_name} ({what})")

    def _launch(self, selector: dict[str, Any], run_config: dict[str, Any], tags: dict[str, str], what: str) -> RunRecord:
        job_name = selector["jobName"]
        data = self.query(
            f"""mutation Launch($params: ExecutionParams!) {{ launchRun(executionParams: $params) {{
                 __typename
                 ... on LaunchRunSuccess {{ run {{ {RUN_FIELDS} }} }}
                 ... on RunConfigValidationInvalid {{ errors {{ message }} }}
                 ... on PythonError {{ message }}
                 ... on PipelineNotFoundError {{ message }}
                 ... on InvalidSubsetError {{ message }}
                 ... on RunConflict {{ message }}
                 ... on UnauthorizedError {{ message }} }} }}""",
            {"params": {
                "selector": selector,
                "runConfigData": run_config,
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }},
        )
        result = data["launchRun"]
        if result["__typename"] == "RunConfigValidationInvalid":
            raise DagsterError(f"{what}: run config refused: " + "; ".join(e["message"] for e in result["errors"]))
        if result["__typename"] == "PipelineNotFoundError":
            with self._lock:  # the code location was reloaded or moved: look it up again next time
                self._locations.pop(job_name, None)
        return RunRecord.from_graphql(self._expect(result, "LaunchRunSuccess", f"launching {what}")["run"])

    def run(self, run_id: str) -> RunRecord | None:
        data = self.query(
            f"""query Run($id: ID!) {{ runOrError(runId: $id) {{ __typename
                 ... on Run {{ {RUN_FIELDS} }} ... on PythonError {{ message }} }} }}""",
            {"id": run_id},
        )
        result = data["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            return None
        return RunRecord.from_graphql(self._expect(result, "Run", f"reading run {run_id}"))

    def runs(
        self,
        job_name: str | None = None,
        tags: dict[str, str] | None = None,
        statuses: list[str] | None = None,
        cursor: str | None = None,
        limit: int = 20,
    ) -> list[RunRecord]:
        """Newest first; ``cursor`` is the id of the last run of the previous page."""
        run_filter: dict[str, Any] = {}
        if job_name:
            run_filter["pipelineName"] = job_name
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if statuses:
            run_filter["statuses"] = statuses
        data = self.query(
            f"""query Runs($filter: RunsFilter, $cursor: String, $limit: Int) {{
                 runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {{ __typename
                 ... on Runs {{ results {{ {RUN_FIELDS} }} }}
                 ... on InvalidPipelineRunsFilterError {{ message }} ... on PythonError {{ message }} }} }}""",
            {"filter": run_filter, "cursor": cursor, "limit": limit},
        )
        result = self._expect(data["runsOrError"], "Runs", "listing runs")
        return [RunRecord.from_graphql(r) for r in result["results"]]

    def run_outcome(self, run_id: str) -> RunOutcome:
        metadata: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        cursor = None
        while True:
            data = self.query(
                f"""query Events($id: ID!, $cursor: String) {{ logsForRun(runId: $id, afterCursor: $cursor, limit: 1000) {{
                     __typename ... on PythonError {{ message }}
                     ... on EventConnection {{ cursor hasMore events {{ __typename
                       ... on ExecutionStepOutputEvent {{ stepKey metadataEntries {{ {METADATA_FIELDS} }} }}
                       ... on ExecutionStepFailureEvent {{ stepKey error {{ message className }} }}
                       ... on RunFailureEvent {{ message }} }} }} }} }}""",
                {"id": run_id, "cursor": cursor},
            )
            connection = self._expect(data["logsForRun"], "EventConnection", f"reading the events of run {run_id}")
            for event in connection["events"]:
                if event["__typename"] == "ExecutionStepOutputEvent":
                    metadata.setdefault(event["stepKey"], {}).update(metadata_values(event["metadataEntries"]))
                elif event["__typename"] == "ExecutionStepFailureEvent" and event.get("error"):
                    errors.append(f"{event['stepKey']}: {error_message(event['error'])}")
                elif event["__typename"] == "RunFailureEvent" and not errors:
                    errors.append(event["message"])
            if not connection["hasMore"]:
                return RunOutcome(metadata, errors)
            cursor = connection["cursor"]

    def terminate(self, run_id: str) -> RunRecord:
        data = self.query(
            f"""mutation Terminate($id: String!) {{ terminateRun(runId: $id) {{ __typename
                 ... on TerminateRunSuccess {{ run {{ {RUN_FIELDS} }} }}
                 ... on TerminateRunFailure {{ message run {{ {RUN_FIELDS} }} }}
                 ... on RunNotFoundError {{ message }} ... on UnauthorizedError {{ message }}
                 ... on PythonError {{ message }} }} }}""",
            {"id": run_id},
        )
        result = data["terminateRun"]
        if result["__typename"] == "TerminateRunFailure":
            raise RunNotTerminable(result["message"], RunRecord.from_graphql(result["run"]))
        return RunRecord.from_graphql(self._expect(result, "TerminateRunSuccess", f"cancelling run {run_id}")["run"])

    def partition_statuses(self, asset_key: list[str]) -> dict[str, str]:
        """{partition key: materialized, failed or in_progress} of a partitioned asset; a partition
        without a run is absent. Empty when no loaded code location defines the asset."""
        data = self.query(
            """query Statuses($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
                 ... on AssetNode { assetPartitionStatuses { __typename
                   ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions } } }
                 ... on AssetNotFoundError { message } } }""",
            {"key": {"path": asset_key}},
        )
        result = data["assetNodeOrError"]
        if result["__typename"] == "AssetNotFoundError":
            return {}
        statuses = self._expect(result, "AssetNode", f"reading asset {'/'.join(asset_key)}")["assetPartitionStatuses"]
        if statuses["__typename"] != "DefaultPartitionStatuses":
            raise DagsterError(f"asset {'/'.join(asset_key)} is not partitioned by a list of keys ({statuses['__typename']})")
        out = {key: "materialized" for key in statuses["materializedPartitions"]}
        out.update({key: "failed" for key in statuses["failedPartitions"]})
        out.update({key: "in_progress" for key in statuses["materializingPartitions"]})
        return out

    def latest_materialization(self, asset_key: list[str]) -> Materialization | None:
        data = self.query(
            f"""query Latest($key: AssetKeyInput!) {{ assetOrError(assetKey: $key) {{ __typename
                 ... on Asset {{ assetMaterializations(limit: 1) {{ runId timestamp metadataEntries {{ {METADATA_FIELDS} }} }} }}
                 ... on AssetNotFoundError {{ message }} }} }}""",
            {"key": {"path": asset_key}},
        )
        result = data["assetOrError"]
        if result["__typename"] == "AssetNotFoundError":
            return None
        events = self._expect(result, "Asset", f"reading asset {'/'.join(asset_key)}")["assetMaterializations"]
        if not events:
            return None
        event = events[0]
        return Materialization(event["runId"], int(event["timestamp"]), metadata_values(event["metadataEntries"]))


class AssetNotFound(DagsterError):
    """No loaded code location defines the asset (the route answers 404)."""


class RunNotTerminable(DagsterError):
    def __init__(self, message: str, run: RunRecord):
        super().__init__(message)
        self.run = run
