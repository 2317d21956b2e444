"""The program a bot container runs: ``tradai run-bot`` (:mod:`tradai_bot.runtime`) starts one Freqtrade
bot from its deployed config, sends its heartbeats and picks up a newly promoted model; locally,
:mod:`tradai_bot.supervisor` (``python -m tradai_bot.supervisor``) keeps a local dry-run bot running.

It needs Freqtrade and the resources it reads state through, never the Dagster code location.
"""
