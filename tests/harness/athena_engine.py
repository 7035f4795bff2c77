"""Athena stand-ins for tests: its table on DuckDB over the same objects (the SQL's meaning), and
canned results for moto in server mode (the call sequence)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import sqlglot

from natflow.aws.athena import RESULT_COLUMNS, FlowLogTable, column_types
from tests.harness.motoserver import MotoServer

DUCKDB_TYPES = {"int": "INTEGER", "bigint": "BIGINT", "string": "VARCHAR"}
# The partition values that projection gives an object: the date parts of its key, any layout.
KEY_DATE = r"/(?:year=)?([0-9]{4})/(?:month=)?([0-9]{2})/(?:day=)?([0-9]{2})/(?:(?:hour=)?([0-9]{2})/)?[^/]*$"


def athena_engine(table: FlowLogTable, files: Sequence[Path]) -> duckdb.DuckDBPyConnection:
    """DuckDB with a view that reads `files` as the Athena table of `table_ddl(table)` reads them.

    The objects are loaded as read (text as VARCHAR) first and typed in the view: DuckDB 2.0 pushes
    a TRY_CAST into its CSV reader as a strict cast, which would fail where Athena reads NULL.
    """
    listing = "[" + ", ".join(f"'{path}'" for path in files) + "]"
    columns = column_types(table.log_format)
    if table.parquet:
        source = f"read_parquet({listing}, filename = true, union_by_name = true)"
        selected = [f'"{name}"' for name, _ in columns]
    else:
        as_text = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name, _ in columns) + "}"
        # LazySimpleSerDe: fields split on single spaces, no quoting, the header skipped, '-' is NULL
        # (serialization.null.format), missing trailing fields are NULL, unparsable numbers are NULL.
        source = (
            f"read_csv({listing}, delim = ' ', header = true, quote = '', escape = '', nullstr = '-', "
            f"null_padding = true, auto_detect = false, columns = {as_text}, filename = true)"
        )
        selected = [f'TRY_CAST("{name}" AS {DUCKDB_TYPES[kind]}) AS "{name}"' for name, kind in columns]
    partitions = [
        f"CAST(regexp_extract(filename, '{KEY_DATE}', {group}) AS INTEGER) AS \"{name}\""
        for group, name in enumerate(table.partition_columns, start=1)
    ]
    connection = duckdb.connect()
    connection.execute(f'CREATE SCHEMA "{table.database}"')
    connection.execute(f"CREATE TABLE objects AS SELECT * FROM {source}")
    connection.execute(
        f"CREATE VIEW {table.qualified_name} AS SELECT {', '.join(selected + partitions)}, "
        f'filename AS "$path" FROM objects'
    )
    return connection


def duckdb_rows(engine: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[str | None, ...]]:
    """The query's rows on DuckDB, as text like Athena's get_query_results gives them."""
    rows = engine.execute(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).fetchall()
    return [tuple(None if value is None else str(value) for value in row) for row in rows]


def post(server: MotoServer, path: str, document: dict[str, Any]) -> None:
    request = urllib.request.Request(
        server.endpoint_url + path, data=json.dumps(document).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        response.read()


def canned(rows: Sequence[Sequence[str | None]]) -> dict[str, Any]:
    """Athena's result shape: the column names first, NULL as a datum without VarCharValue."""
    data = [[{"VarCharValue": name} for name in RESULT_COLUMNS]]
    data += [[{} if value is None else {"VarCharValue": value} for value in row] for row in rows]
    return {"rows": [{"Data": datum} for datum in data], "column_info": [{"Name": n, "Type": "varchar"} for n in RESULT_COLUMNS]}  # fmt: skip
