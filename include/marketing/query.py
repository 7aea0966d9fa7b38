"""Query the analysts' copy read-only: ``python -m marketing.query PATH ["SQL"]``.

Without SQL it reads statements from standard input, one per line (``make query``). The file is
opened read-only, so it never blocks the pipeline and can never change what was published.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from marketing import warehouse


def run(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Execute ``sql`` and return its result as a text table (at most 50 rows)."""
    result = con.execute(sql)
    if result.description is None:
        return "ok"
    return result.df().head(50).to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("sql", nargs="?")
    args = parser.parse_args(argv)
    with warehouse.connect(args.path, read_only=True) as con:
        if args.sql:
            print(run(con, args.sql))
            return 0
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"{args.path} (read-only). Tables: select * from information_schema.tables; "
                  "Ctrl-D quits.")
        while True:
            try:
                line = input("sql> " if interactive else "")
            except EOFError:
                return 0
            if line.strip():
                try:
                    print(run(con, line))
                except duckdb.Error as exc:
                    print(f"error: {exc}")


if __name__ == "__main__":
    sys.exit(main())
