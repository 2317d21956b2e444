"""The ``tradai`` command line and the Python client it uses (``TradaiClient``).

Run by users and scripts: ``tradai ...`` (the console script installed with the project) or
``python -m tradai_client.cli``. It talks to the HTTP API only; ``tradai run-bot`` hands over to the bot
runtime (:mod:`tradai_bot`). It never imports the Dagster code location.
"""
