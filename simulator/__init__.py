"""The simulated Binance exchange: Binance's REST market-data and trading API served over HTTP on this
machine, for offline development and tests.

Run by ``make dev`` (``python -m simulator --host 127.0.0.1 --port 8300``) and started by the tests and
benchmarks as a subprocess; ccxt reaches it through its normal URL settings
(:func:`tradai_core.binance_urls.ccxt_config`). It is the outside world, simulated: no product code
imports it.
"""
