"""Resources: the only code that talks to the outside world (ArcticDB, exchanges through ccxt, MLflow,
AWS, Freqtrade, local bot processes, notifications).

Nothing runs it on its own: the code location, the sensors, the API and the bot runtime use these
clients. It imports only :mod:`tradai_core`, never a program above it.
"""
