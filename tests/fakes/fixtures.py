"""Pytest fixtures for the fake Binance server.

Import them into a test module (or a conftest.py)::

    from tests.fakes.fixtures import fake_binance, fake_binance_clean  # noqa: F401

``fake_binance`` is one server for the whole session (default markets, seed 0, real clock).  Tests
that set its clock or fault rules, or count requests, use ``fake_binance_clean``: the same server,
reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.client import FakeBinance


@pytest.fixture(scope="session")
def fake_binance() -> Iterator[FakeBinance]:
    """A running fake Binance server shared by the test session."""
    with FakeBinance() as server:
        yield server


@pytest.fixture
def fake_binance_clean(fake_binance: FakeBinance) -> Iterator[FakeBinance]:
    """The session's fake Binance server, its clock, rules and counters reset around the test."""
    fake_binance.reset()
    yield fake_binance
    fake_binance.reset()
