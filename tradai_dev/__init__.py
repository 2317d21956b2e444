"""``make dev``: the product on one machine.

Run by ``make dev`` (``python -m tradai_dev.devserver``): it prepares the local stores once
(:mod:`tradai_dev.bootstrap`: the Dagster instance, the MLflow store, the shipped sample), then starts
and watches the Dagster webserver, daemon and code server, the MLflow UI, the HTTP API and the
simulated exchange, and stops them all on one Ctrl-C. It drives the code location; nothing imports it.
"""
