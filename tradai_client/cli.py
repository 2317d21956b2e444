"""``tradai``: backtests, strategies, market data, models and bots from the shell, through the HTTP API.

The API's URL and token come from ``TRADAI_API_URL`` / ``TRADAI_API_TOKEN`` or the config file
(see ``tradai_client.client``). ``tradai token`` and ``tradai strategy new`` work without the API.
"""

from __future__ import annotations

import json
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
