"""Create the database named in a PostgreSQL URL if it does not exist yet.

The MLflow service runs ``python -m deploy.ensure_database`` before ``mlflow server``: RDS creates
only Dagster's database, and MLflow's lives on the same instance; the code location service runs
``python -m deploy.ensure_database --env TRADAI_SWEEP_STORAGE_URL`` for the sweeps' Optuna database.
Idempotent; the URL comes from MLFLOW_BACKEND_STORE_URI (a Secrets Manager entry), from the variable
named after ``--env``, or from the argument.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from resources.aws_contract import EnvVar

MAINTENANCE_DATABASE = "postgres"


def ensure_database(url: str) -> bool:
    """Create the URL's database (connecting to the server's ``postgres`` database); True if created."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError("the URL names no database")
    scheme = parts.scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql for libpq
    maintenance = urlunsplit((scheme, parts.netloc, f"/{MAINTENANCE_DATABASE}", parts.query, ""))
    connection = psycopg2.connect(maintenance)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone():
                return False
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg2.errors.DuplicateDatabase:  # another task created it meanwhile
                return False
            return True
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--env":
        variable, url = argv[2], os.environ.get(argv[2])
    elif len(argv) == 2 and argv[1] != "--env":
        variable, url = None, argv[1]
    elif len(argv) == 1:
        variable, url = EnvVar.MLFLOW_BACKEND_STORE_URI, os.environ.get(EnvVar.MLFLOW_BACKEND_STORE_URI)
    else:
        print("usage: python -m deploy.ensure_database [URL | --env VARIABLE]", file=sys.stderr)
        return 2
    if not url:
        print(f"{variable} is not set", file=sys.stderr)
        return 2
    created = ensure_database(url)
    database = urlsplit(url).path.lstrip("/")
    print(f"database {database} {'created' if created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
