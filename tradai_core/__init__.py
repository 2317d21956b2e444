"""Plain domain logic that every program of the product shares: candle maths, strategy discovery and
source hashing, strategy configs and their content hashes, the universe file, PSI drift maths, the
champion/challenger decision, local paths and settings, and the ``ModelStrategy`` base class that
model-driven strategies derive from.

Nothing runs it on its own: the code location, the sensors, the HTTP API, the CLI, the bot runtime and
the simulator import it. It imports no Dagster asset module, no FastAPI and no resource, so each of
those programs can use it without loading the others.
"""
