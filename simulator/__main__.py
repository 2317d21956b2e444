"""``python -m simulator``: serve the simulated Binance exchange (see :mod:`simulator.binance`)."""

from simulator.app import main

raise SystemExit(main())
