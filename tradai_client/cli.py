"""``tradai``: backtests, sweeps, strategies, market data, models and bots from the shell, through the HTTP API.

The API's URL and token come from ``TRADAI_API_URL`` / ``TRADAI_API_TOKEN`` or the config file
(see ``tradai_client.client``). ``tradai token`` and ``tradai strategy new`` work without the API.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from resources.aws_contract import API_SCOPES
from tradai_client.client import ApiError, TradaiClient, format_detail

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def client() -> TradaiClient:
    return TradaiClient()


def fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    sys.exit(1)


def call(function, *args, **kwargs):
    """Run one API call; an API error becomes a one-line message and exit status 1."""
    try:
        return function(*args, **kwargs)
    except ApiError as exc:
        hint = " (set TRADAI_API_TOKEN, e.g. export TRADAI_API_TOKEN=$(tradai token))" if exc.status == 401 else ""
        fail(f"HTTP {exc.status}: {format_detail(exc.detail)}{hint}")
    except httpx.TransportError as exc:
        fail(f"cannot reach the API at {exc.request.url}: {exc}")


def short_time(iso: str | None) -> str:
    return "" if not iso else iso[:16].replace("T", " ")


def number(value: float) -> str:
    return f"{value:.8g}"


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, str(int(value)) if name == "trades" else number(value))
    return table


def show_job(job: dict[str, Any]) -> None:
    console.print(f"job {job['job_id']}  strategy {job['strategy']}  [bold]{job['status']}[/bold]")
    for key in ("created_at", "started_at", "finished_at", "timerange"):
        if job.get(key):
            console.print(f"  {key}: {job[key]}")
    if job.get("request"):
        console.print(f"  request: {json.dumps(job['request'], sort_keys=True)}")
    for warning in job.get("warnings") or []:
        console.print(f"  [yellow]warning:[/yellow] {warning}")
    if job.get("error"):
        console.print(f"  [red]error:[/red] {job['error']}")
    if job.get("metrics"):
        console.print(metrics_table(job["metrics"], f"{job['strategy']} {job.get('timerange') or ''}".strip()))
    if job.get("mlflow"):
        console.print(f"  MLflow run {job['mlflow']['run_id']}: {job['mlflow'].get('url')}")


def progress_printer(label: str):
    """Prints a line when the status changes (readable in CI logs), with the time since submission."""
    started = time.monotonic()
    last = {"status": None}

    def on_update(job: dict[str, Any]) -> None:
        if job["status"] != last["status"]:
            last["status"] = job["status"]
            console.print(f"[{time.monotonic() - started:5.0f}s] {label} {job['status']}")

    return on_update


@click.group()
@click.version_option(package_name="tradai")
def main() -> None:
    """TradAI: backtests, strategies, market data, models and bots through the TradAI API."""


# Backtests ----------------------------------------------------------------------------------------


def parse_overrides(settings: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare word is a string
        target = overrides
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = parsed
    return overrides


@main.command()
@click.argument("strategy")
@click.option("--timerange", help="YYYYMMDD-YYYYMMDD (open ends allowed) or 'all'")
@click.option("--pairs", help="comma-separated, e.g. ETH/BTC,LTC/BTC")
@click.option("--timeframe", help="e.g. 5m")
@click.option("--stake-amount", type=float, help="stake per trade in the stake currency")
@click.option("--fee", type=float, help="fee rate, e.g. 0.001")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="any Freqtrade config key (dots for nesting; JSON values), repeatable")
@click.option("--idempotency-key", help="repeat a submission safely: the same key returns the same job")
@click.option("--wait/--no-wait", default=False, help="show progress until the run ends, then the metrics")
@click.option("--timeout", type=float, help="with --wait: give up after this many seconds")
def backtest(strategy, timerange, pairs, timeframe, stake_amount, fee, settings, idempotency_key, wait, timeout):
    """Launch a backtest of STRATEGY."""
    overrides = parse_overrides(settings)
    if stake_amount is not None:
        overrides["stake_amount"] = stake_amount
    if fee is not None:
        overrides["fee"] = fee
    with client() as api:
        job = call(
            api.submit_backtest, strategy, timerange=timerange,
            pairs=[p.strip() for p in pairs.split(",") if p.strip()] if pairs else None,
            timeframe=timeframe, overrides=overrides or None, idempotency_key=idempotency_key,
        )
        console.print(f"job {job['job_id']} {job['status']}")
        if not wait:
            return
        try:
            final = call(api.wait, job["job_id"], timeout=timeout, on_update=progress_printer(strategy))
        except TimeoutError as exc:
            fail(str(exc))
        show_job(final)
        if final["status"] != "SUCCEEDED":
            sys.exit(1)


@main.group()
def backtests() -> None:
    """List, show and cancel backtest jobs."""


@backtests.command("list")
@click.option("--strategy")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"]))
@click.option("--limit", type=click.IntRange(1, 100), default=20)
@click.option("--cursor", help="next_cursor printed by the previous page")
def backtests_list(strategy, statuses, limit, cursor):
    """Backtest jobs, newest first."""
    with client() as api:
        page = call(api.backtests, strategy=strategy, status=list(statuses) or None, limit=limit, cursor=cursor)
    table = Table(show_header=True)
    table.add_column("job id", no_wrap=True, min_width=36)  # to be copied whole into show and cancel
    for column in ("strategy", "status", "created (UTC)", "finished (UTC)"):
        table.add_column(column, overflow="fold")
    for job in page["items"]:
        table.add_row(job["job_id"], job["strategy"] or "", job["status"], short_time(job["created_at"]), short_time(job["finished_at"]))
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@backtests.command("show")
@click.argument("job_id")
def backtests_show(job_id):
    """Status, request, and when finished the metrics and the MLflow run."""
    with client() as api:
        show_job(call(api.backtest, job_id))


@backtests.command("cancel")
@click.argument("job_id")
def backtests_cancel(job_id):
    """Cancel a queued or running backtest."""
    with client() as api:
        job = call(api.cancel, job_id)
    console.print(f"job {job['job_id']} {job['status']}")


# Strategies ---------------------------------------------------------------------------------------


# Sweeps -------------------------------------------------------------------------------------------


def parse_grid(items: tuple[str, ...]) -> dict[str, list[Any]]:
    """``name=v1,v2,...`` (repeatable) -> {name: [values]}; numbers, true/false and quoted strings as JSON."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE,VALUE,...", param_hint="--grid")
        parsed = []
        for value in values.split(","):
            try:
                parsed.append(json.loads(value))
            except json.JSONDecodeError:
                parsed.append(value)  # a bare word is a category
        grid[name] = parsed
    return grid


def parse_ranges(items: tuple[str, ...]) -> dict[str, list[float]]:
    ranges: dict[str, list[float]] = {}
    for item in items:
        name, sep, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        try:
            ranges[name] = [float(low), float(high)]
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected NAME=LOW:HIGH", param_hint="--range") from None
        if not sep or not name or not colon:
            raise click.BadParameter(f"{item!r}: expected NAME=LOW:HIGH", param_hint="--range")
    return ranges


def show_sweep(sweep: dict[str, Any]) -> None:
    console.print(f"sweep {sweep['sweep_id']}  strategy {sweep['strategy']}  [bold]{sweep['state']}[/bold]")
    console.print(
        f"  trials: {sweep['materialized']} done, {sweep['failed']} failed, {sweep['in_progress']} running, "
        f"{sweep['pending']} pending of {sweep['planned']}"
    )
    if sweep.get("best_trial"):
        console.print(
            f"  best: {sweep['best_trial']} {sweep['objective']} {number(sweep['best_objective'])} "
            f"{json.dumps(sweep['best_parameters'], sort_keys=True)}"
        )
    for key, error in (sweep.get("errors") or {}).items():
        console.print(f"  [red]{key}:[/red] {error}")
    if sweep.get("error"):
        console.print(f"  [red]error:[/red] {sweep['error']}")
    if sweep.get("cancelled"):
        console.print(f"  cancelled by {sweep['cancelled']['by']} at {short_time(sweep['cancelled']['at'])}")


def results_table(results: dict[str, Any], top: int) -> Table:
    rows = results["trials"][:top]
    table = Table(title=f"{results['strategy']} sweep {results['sweep_id']}: {results['objective']}", show_header=True)
    columns = [c for c in (rows[0] if rows else {}) if c not in ("mlflow_run_id",)]
    for column in columns:
        table.add_column(column, justify="right" if column not in ("trial", "status", "error") else "left")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append("" if value is None else number(value) if isinstance(value, float) else str(value))
        table.add_row(*cells)
    return table


def wait_with_progress(api: TradaiClient, sweep_id: str, timeout: float | None) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"{sweep_id} planning", total=None)

        def update(sweep: dict[str, Any]) -> None:
            done = sweep.get("materialized", 0) + sweep.get("failed", 0)
            progress.update(
                task, total=sweep.get("planned") or None, completed=done,
                description=f"{sweep_id} {sweep['state']} ({sweep.get('failed', 0)} failed)",
            )

        try:
            return call(api.wait_sweep, sweep_id, timeout=timeout, on_update=update)
        except TimeoutError as exc:
            fail(str(exc))


@main.command()
@click.argument("strategy")
@click.option("--timerange", required=True, help="YYYYMMDD-YYYYMMDD, inside the stored candles")
@click.option("--grid", "grid", multiple=True, metavar="NAME=V1,V2,...", help="values of one parameter, repeatable")
@click.option("--range", "ranges", multiple=True, metavar="NAME=LOW:HIGH", help="a narrower range, repeatable")
@click.option("--space", "spaces", multiple=True, help="Freqtrade parameter space to search (buy, sell, ...)")
@click.option("--search", type=click.Choice(["grid", "random", "tpe", "nsga2"]),
              help="default: grid with --grid, else random")
@click.option("--budget", type=int, help="number of trials (default: the grid's size, else 20)")
@click.option("--objective", type=click.Choice(["sharpe", "sortino", "calmar", "profit", "max_drawdown"]),
              default="sharpe", show_default=True)
@click.option("--second-objective", type=click.Choice(["sharpe", "sortino", "calmar", "profit", "max_drawdown"]),
              help="nsga2 only")
@click.option("--min-trades", type=int, help="trials with fewer trades are not ranked (default 10)")
@click.option("--pairs", help="comma-separated, e.g. ETH/BTC,LTC/BTC")
@click.option("--trials-per-run", type=int, help="trials one worker run does (default 10)")
@click.option("--seed", type=int)
@click.option("--sweep-id", help="default: <strategy>_<UTC time>")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="any Freqtrade config key, repeatable")
@click.option("--wait/--no-wait", default=False, help="a progress bar of trials done until the summary, then the top trials")
@click.option("--top", type=int, default=10, show_default=True, help="with --wait: how many trials to show")
@click.option("--timeout", type=float, help="with --wait: give up after this many seconds")
def sweep(strategy, timerange, grid, ranges, spaces, search, budget, objective, second_objective, min_trades, pairs,
          trials_per_run, seed, sweep_id, settings, wait, top, timeout):
    """Start a parameter sweep of STRATEGY over its Freqtrade hyperopt parameters."""
    grid_values = parse_grid(grid)
    search = search or ("grid" if grid_values else "random")
    if budget is None:
        budget = math.prod(len(v) for v in grid_values.values()) if search == "grid" and grid_values else 20
    spec: dict[str, Any] = {"strategy": strategy, "timerange": timerange, "search": search, "budget": budget,
                            "objective": objective}
    for key, value in (("grid", grid_values), ("ranges", parse_ranges(ranges)), ("spaces", list(spaces)),
                       ("overrides", parse_overrides(settings))):
        if value:
            spec[key] = value
    for key, value in (("second_objective", second_objective), ("min_trades", min_trades), ("seed", seed),
                       ("trials_per_run", trials_per_run), ("sweep_id", sweep_id)):
        if value is not None:
            spec[key] = value
    if pairs:
        spec["pairs"] = [p.strip() for p in pairs.split(",") if p.strip()]
    with client() as api:
        accepted = call(api.start_sweep, spec)
        console.print(f"sweep {accepted['sweep_id']} {accepted['state']} (job {accepted['job_id']})")
        if not wait:
            return
        final = wait_with_progress(api, accepted["sweep_id"], timeout)
        show_sweep(final)
        if final["state"] != "summarised":
            sys.exit(1)
        console.print(results_table(call(api.sweep_results, accepted["sweep_id"]), top))


@main.group()
def sweeps() -> None:
    """List, show, cancel sweeps and read their ranked results."""


@sweeps.command("list")
@click.option("--strategy")
@click.option("--limit", type=click.IntRange(1, 200), default=50)
def sweeps_list(strategy, limit):
    """Sweeps, newest first."""
    with client() as api:
        items = call(api.sweeps, strategy=strategy, limit=limit)
    table = Table(show_header=True)
    table.add_column("sweep id", no_wrap=True)
    for column in ("strategy", "state", "done", "failed", "planned", "best"):
        table.add_column(column, overflow="fold")
    for s in items:
        best = "" if s["best_objective"] is None else f"{s['objective']} {number(s['best_objective'])}"
        table.add_row(s["sweep_id"], s["strategy"] or "", s["state"], str(s["materialized"]), str(s["failed"]),
                      str(s["planned"]), best)
    console.print(table)


@sweeps.command("show")
@click.argument("sweep_id")
def sweeps_show(sweep_id):
    """State, trial counts, the best trial so far and the failed trials' errors."""
    with client() as api:
        show_sweep(call(api.sweep, sweep_id))


@sweeps.command("cancel")
@click.argument("sweep_id")
def sweeps_cancel(sweep_id):
    """Cancel a sweep: its queued and running runs, and every trial not started yet."""
    with client() as api:
        show_sweep(call(api.cancel_sweep, sweep_id))


@sweeps.command("results")
@click.argument("sweep_id")
@click.option("--top", type=int, default=20, show_default=True)
def sweeps_results(sweep_id, top):
    """The ranked trials table and the best parameters."""
    with client() as api:
        results = call(api.sweep_results, sweep_id)
    console.print(results_table(results, top))
    if results["best_trial"]:
        console.print(f"best {results['best_trial']}: {json.dumps(results['best_parameters'], sort_keys=True)}")
    if not results["complete"]:
        console.print("(not every trial has a result yet)")


@main.command("catalog")
@click.argument("name", required=False)
@click.option("--compare", is_flag=True, help="NAME's backtests, sweeps and model versions side by side")
@click.option("--limit", type=int, default=20, show_default=True, help="with --compare: rows of each kind")
def catalog(name, compare, limit):
    """Every strategy with its latest results, or one strategy (NAME), or its results side by side."""
    if compare and not name:
        raise click.UsageError("--compare needs a strategy NAME")
    with client() as api:
        if compare:
            rows = call(api.compare, name, limit)["items"]
            metrics = sorted({m for r in rows for m in r["metrics"]})
            table = Table("kind", "id", "at", "status", *metrics, title=f"{name}: results side by side")
            for r in rows:
                table.add_row(r["kind"], r["id"], (r["at"] or "")[:19], r["status"] or "",
                              *(f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "" for m in metrics))
            console.print(table if rows else f"{name}: no backtests, sweeps or model versions yet")
            return
        entries = [call(api.catalog_strategy, name)] if name else call(api.catalog)["items"]
    table = Table("strategy", "timeframe", "latest backtest", "profit", "sharpe", "trades", "sweeps", "model")
    for e in entries:
        latest = e["latest_backtest"] or {}
        figures = latest.get("metrics", {})
        model = e["model"]
        table.add_row(
            e["name"], e["timeframe"] or "", (latest.get("finished_at") or "")[:19],
            *(f"{figures[k]:.4g}" if k in figures else "" for k in ("profit_total", "sharpe", "trades")),
            str(e["sweeps"]),
            "" if model is None else ", ".join(f"{a} v{v}" for a, v in sorted(model["aliases"].items())) or "none",
        )
    console.print(table)


@main.group()
def strategy() -> None:
    """Create and inspect strategies."""


@strategy.command("new")
@click.argument("name")
@click.option("--template", type=click.Choice(["rsi", "ema", "blank"]), default="blank", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="strategies directory (default: TRADAI_STRATEGIES, else the repository's strategies/)")
def strategy_new(name, template, directory):
    """Write strategies/NAME.py from a template; it backtests on the sample as it is."""
    from pathlib import Path

    from tradai_api.settings import strategies_dir
    from tradai_client.strategy_templates import StrategyFileError, new_strategy

    try:
        path = new_strategy(Path(directory) if directory else strategies_dir(), name, template)
    except StrategyFileError as exc:
        fail(str(exc))
    console.print(f"wrote {path}")
    console.print(f"backtest it: tradai backtest {name} --wait")


@strategy.command("list")
def strategy_list():
    """Strategies the API knows."""
    with client() as api:
        items = call(api.strategies)
    table = Table(show_header=True)
    for column in ("name", "category", "timeframe", "file", "problem"):
        table.add_column(column)
    for item in items:
        table.add_row(item["name"], item["category"] or "", item["timeframe"] or "", item["file"], item["problem"] or "")
    console.print(table)


@strategy.command("show")
@click.argument("name")
def strategy_show(name):
    """A strategy's metadata, stored config hash and latest backtest metrics."""
    with client() as api:
        item = call(api.strategy, name)
    console.print(f"[bold]{item['name']}[/bold] ({item['file']}) {item['description'] or ''}")
    if item["problem"]:
        console.print(f"  [red]problem:[/red] {item['problem']}")
    if item["config"]:
        console.print(f"  config {item['config']['config_hash'][:12]} stored {item['config']['materialized_at']}")
    latest = item["latest_backtest"]
    if latest:
        console.print(metrics_table(latest["metrics"], f"latest {latest['kind']} backtest {latest['timerange'] or ''}".strip()))


# Market data --------------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Market data: freshness and syncs."""


@data.command("freshness")
@click.option("--stale-only", is_flag=True, help="only series whose age exceeds the universe's max_age")
def data_freshness(stale_only):
    """Per pair and timeframe: the newest stored candle and its age."""
    with client() as api:
        report = call(api.freshness)
    table = Table(title=f"checked {report['checked_at'][:19]} UTC", show_header=True)
    for column in ("exchange", "market", "pair", "timeframe", "candles", "last candle (UTC)", "age", "fresh"):
        table.add_column(column, overflow="fold")
    for s in report["series"]:
        if stale_only and s["fresh"] is not False:
            continue
        age = "never stored" if s["age_seconds"] is None else human_age(s["age_seconds"])
        fresh = "" if s["fresh"] is None else ("yes" if s["fresh"] else "[red]no[/red]")
        table.add_row(s["exchange"], s["market_type"], s["pair"], s["timeframe"], s["candle_type"],
                      short_time(s["last_candle"]), age, fresh)
    console.print(table)


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@data.command("sync")
@click.option("--exchange")
@click.option("--market-type", type=click.Choice(["spot", "futures"]))
@click.option("--start", help="first UTC day, YYYY-MM-DD (default yesterday)")
@click.option("--end", help="last UTC day, YYYY-MM-DD (default today)")
@click.option("--wait/--no-wait", default=False, help="wait for the sync runs to end")
def data_sync(exchange, market_type, start, end, wait):
    """Fetch new candles now (what the hourly schedules do)."""
    with client() as api:
        result = call(api.sync, exchange=exchange, market_type=market_type, start=start, end=end)
        for skipped in result["skipped"]:
            console.print(f"skipped {skipped['exchange']} {skipped['market_type']}: {skipped['reason']}")
        for run in result["runs"]:
            console.print(f"job {run['job_id']} {run['job']} {run['start']}..{run['end']} {run['status']}")
        if not wait:
            return
        failed = False
        for run in result["runs"]:
            final = call(api.wait, run["job_id"], path="/api/v1/data/sync/{job_id}", on_update=progress_printer(run["job"]))
            if final["status"] != "SUCCEEDED":
                failed = True
                console.print(f"  [red]{final['status']}[/red] {final.get('error') or ''}")
        if failed:
            sys.exit(1)


# Models -------------------------------------------------------------------------------------------


def version_text(version: int | None) -> str:
    return "" if version is None else f"v{version}"


@main.group()
def models() -> None:
    """Model strategies: versions, aliases, audit log; promote, roll back, retrain."""


@models.command("list")
def models_list():
    """Model strategies and the versions their aliases point at."""
    with client() as api:
        items = call(api.models)
    table = Table(show_header=True)
    for column in ("model", "champion", "challenger", "previous", "file", "problem"):
        table.add_column(column, overflow="fold")
    for item in items:
        aliases = item["aliases"]
        table.add_row(
            item["name"], version_text(aliases.get("champion")), version_text(aliases.get("challenger")),
            version_text(aliases.get("previous")), item["file"] or "",
            item["problem"] or ("" if item["registered"] else "not trained yet"),
        )
    console.print(table)


@models.command("versions")
@click.argument("name")
def models_versions(name):
    """NAME's versions, newest first, with their aliases and training metrics."""
    with client() as api:
        items = call(api.model_versions, name)
    metric_names = sorted({m for v in items for m in v["metrics"]})[:6]
    table = Table(title=name, show_header=True)
    for column in ("version", "aliases", "created (UTC)", "run id", *metric_names):
        table.add_column(column, overflow="fold")
    for v in items:
        table.add_row(
            version_text(v["version"]), ", ".join(v["aliases"]), short_time(v["created_at"]), v["run_id"] or "",
            *(number(v["metrics"][m]) if m in v["metrics"] else "" for m in metric_names),
        )
    console.print(table)


@models.command("audit")
@click.argument("name")
def models_audit(name):
    """Every decision and alias move of NAME, oldest first."""
    with client() as api:
        items = call(api.model_audit, name)
    table = Table(title=f"{name}: audit log", show_header=True)
    for column in ("time (UTC)", "event", "trigger", "champion", "previous", "challenger", "p-value"):
        table.add_column(column, overflow="fold")
    for e in items:
        moved = f"{version_text(e['champion_before']) or '-'} -> {version_text(e['champion_after']) or '-'}"
        table.add_row(
            e["time"][:19].replace("T", " "), e["event"], e["trigger"], moved, version_text(e["previous_after"]),
            version_text(e["challenger"]), "" if e["p_value"] is None else f"{e['p_value']:.4g}",
        )
    console.print(table)


def show_move(move: dict[str, Any]) -> None:
    console.print(
        f"{move['name']}: {move['event']} champion {version_text(move['champion_before']) or '-'} -> "
        f"{version_text(move['champion_after'])} (previous {version_text(move['previous_after']) or '-'}), "
        f"trigger {move['trigger']}"
    )


@models.command("promote")
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), help="the version to promote (default the challenger)")
def models_promote(name, version):
    """Make NAME's challenger (or --version) the champion, recorded in the audit log."""
    with client() as api:
        show_move(call(api.promote, name, version))


@models.command("rollback")
@click.argument("name")
@click.option("--to", "to_version", type=click.IntRange(min=1), help="the version to go back to (default previous)")
def models_rollback(name, to_version):
    """Move NAME's champion back to the previous version (or --to), recorded in the audit log."""
    with client() as api:
        show_move(call(api.rollback, name, to_version))


@models.command("train")
@click.argument("name")
def models_train(name):
    """Retrain NAME now (a run materialising strategies/NAME/model)."""
    with client() as api:
        run = call(api.train, name)
    console.print(f"job {run['job_id']} {run['asset']} {run['status']}  {run['links']['dagster_run']}")


# Bots ---------------------------------------------------------------------------------------------


def bots_table(bots: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, show_header=True)
    for column in ("strategy", "bot id", "mode", "state", "heartbeat", "age", "healthy", "open trades", "profit"):
        table.add_column(column, overflow="fold")
    for b in bots:
        beat = b["heartbeat"]
        table.add_row(
            b["strategy"] or "", b["strategy_id"] or "", b["mode"] or "", b["state"],
            beat["status"] if beat else "none", human_age(beat["age_seconds"]) if beat else "",
            "yes" if b["healthy"] else "[red]no[/red]",
            str(beat["open_trades"]) if beat else "", number(beat["profit"]) if beat else "",
        )
    return table


@main.group()
def bots() -> None:
    """Live and dry-run bots: health, start, stop, the kill switch."""


@bots.command("list")
def bots_list():
    """Every bot with its state, last heartbeat and health."""
    with client() as api:
        report = call(api.bots)
    console.print(bots_table(report["items"], f"checked {report['checked_at'][:19]} UTC; "
                                              f"healthy = heartbeat under {report['max_heartbeat_age_seconds']:g} s"))


@bots.command("status")
@click.argument("name")
def bots_status(name):
    """One bot (by strategy class name or bot id), with what its backend reports."""
    with client() as api:
        bot = call(api.bot, name)
    console.print(bots_table([bot]))
    for key, value in bot["backend"].items():
        if value not in (None, "", [], {}):
            console.print(f"  {key}: {value}")


@bots.command("start")
@click.argument("name")
@click.option("--mode", type=click.Choice(["dry_run", "live"]), default="dry_run", show_default=True)
@click.option("--force", is_flag=True, help="deploy even though the latest backtest failed")
def bots_start(name, mode, force):
    """Deploy NAME's bot (a run materialising strategies/NAME/deployment; its interlocks apply)."""
    with client() as api:
        run = call(api.start_bot, name, mode=mode, force=force)
    console.print(f"job {run['job_id']} {run['asset']} {run['status']}  {run['links']['dagster_run']}")


@bots.command("stop")
@click.argument("name")
def bots_stop(name):
    """Stop NAME's bot (a run materialising strategies/NAME/deployment with mode stopped)."""
    with client() as api:
        run = call(api.stop_bot, name)
    console.print(f"job {run['job_id']} {run['asset']} {run['status']}  {run['links']['dagster_run']}")


@bots.command("kill-switch")
@click.option("--include-dry-run", is_flag=True, help="stop the dry-run bots too")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def bots_kill_switch(include_dry_run, yes):
    """Stop every live bot at once."""
    which = "every live and dry-run bot" if include_dry_run else "every live bot"
    if not yes and not click.confirm(f"Stop {which} now?", default=False, err=True):
        fail("not confirmed; nothing stopped")
    with client() as api:
        result = call(api.kill_switch, include_dry_run=include_dry_run)
    stopped = result["stopped"]
    console.print(f"kill switch: stopped {len(stopped)} bot(s)")
    for s in stopped:
        console.print(f"  {s.get('strategy_id', s)} {s.get('status', '')} {' '.join(s.get('actions') or [])}".rstrip())


# Tokens -------------------------------------------------------------------------------------------


@main.command()
@click.option("--subject", default=lambda: os.environ.get("USER", "developer"), show_default="$USER",
              help="the token's sub claim: who the API sees (rate limits are per subject)")
@click.option("--scope", "scopes", multiple=True,
              type=click.Choice(list(API_SCOPES)),
              help="repeatable; default every scope")
@click.option("--ttl-minutes", type=click.FloatRange(min=1), default=None,
              help="lifetime (default TRADAI_API_JWT_TTL_MINUTES, else 720)")
def token(subject, scopes, ttl_minutes):
    """Mint a development token signed with TRADAI_API_JWT_SECRET (hs256 mode)."""
    from resources.aws_contract import EnvVar
    from tradai_api.auth import mint_token
    from tradai_api.settings import DEFAULT_AUDIENCE

    secret = os.environ.get(EnvVar.API_JWT_SECRET)
    if not secret:
        fail(f"{EnvVar.API_JWT_SECRET} is not set; it must be the secret the API verifies with")
    ttl = ttl_minutes or float(os.environ.get(EnvVar.API_JWT_TTL_MINUTES, 720))
    click.echo(mint_token(
        secret, subject, list(scopes) or list(API_SCOPES), ttl * 60,
        algorithm=os.environ.get(EnvVar.API_JWT_ALGORITHM, "HS256"),
        issuer=os.environ.get(EnvVar.API_JWT_ISSUER), audience=os.environ.get(EnvVar.API_JWT_AUDIENCE, DEFAULT_AUDIENCE),
    ))


# Bot entrypoint -----------------------------------------------------------------------------------


@main.command("run-bot")
@click.option("--strategy-path", type=click.Path(file_okay=False),
              help="strategy files (default: TRADAI_STRATEGIES, else the repository's strategies/)")
@click.option("--workdir", type=click.Path(file_okay=False), help="the bot's working files (default: current directory)")
@click.option("--db-url", help="freqtrade's trade database (default: freqtrade's, in the working directory)")
@click.option("--userdir", type=click.Path(file_okay=False), help="freqtrade's user directory (default: WORKDIR/user_data)")
@click.option("--logfile", type=click.Path(dir_okay=False), help="freqtrade's log file (default: console only)")
def run_bot(strategy_path, workdir, db_url, userdir, logfile):
    """Run one bot from its deployment's environment (STRATEGY, STRATEGY_ID, TRADING_MODE, CONFIG_PATH ...).

    Runs Freqtrade's trading loop until SIGTERM, with heartbeats to the trading-state store; see docs/bots.md."""
    from tradai_bot.runtime import main as run_bot_main

    sys.exit(run_bot_main(strategy_path=strategy_path, workdir=workdir, db_url=db_url, userdir=userdir, logfile=logfile))


if __name__ == "__main__":
    main()
