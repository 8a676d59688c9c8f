"""``python -m devtools.drills [--full] [--only dNN ...]``: run the drills, one line each.

Each drill prints one line (name, verdict, load, faults, figure); a drill that
raises, or whose module does not import, is a FAIL line with the error, never
the end of the run. With ``--full`` (``make drills``) the results go into the
table of docs/reliability.md between its markers, one row per drill (keyed by
its name): the drills run replace their rows, the others keep theirs, each row
says when and in which form it was run. Markers missing: the table is appended
with them. ``--no-write`` prints only. ``--postgres``: the drills start their
stacks on a throwaway PostgreSQL database on 127.0.0.1:5432 (d07's property
tests run on both backends anyway), and their rows are named "... (PostgreSQL)",
beside the SQLite ones. Exit status 1 when any drill fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from devtools.drills.base import DrillResult, discover
from devtools.drills.kit import DATABASE_URL_ENV, throwaway_postgres

_DOC = Path(__file__).resolve().parents[4] / "docs" / "reliability.md"
BEGIN = "<!-- drills:begin -->"
END = "<!-- drills:end -->"
HEADER = "| drill | verdict | load | faults | figure | run |\n| --- | --- | --- | --- | --- | --- |"


def _cell(text: str) -> str:
    """``text`` fit for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or "-"


def row(result: DrillResult, run: str) -> str:
    """``result`` as one table row; ``run`` says when and in which form."""
    verdict = "PASS" if result.passed else f"FAIL ({result.detail})" if result.detail else "FAIL"
    cells = (result.name, verdict, result.load, result.faults, result.figure, run)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _key(line: str) -> str:
    """A row's drill name (its first cell, ``d04 NATS cluster restarts``), or "" for a line
    that is not a drill's row. The whole name, not ``dNN``: two drills may share a number
    (d10's fuzz and hostile input), and each keeps its row."""
    first = line.strip().removeprefix("|").split("|", 1)[0].strip()
    word = first.replace("_", " ").split(" ", 1)[0]
    return first if len(word) == 3 and word[0] == "d" and word[1:].isdigit() else ""


def merge_table(text: str, results: list[DrillResult], run: str) -> str:
    """``text`` (the doc) with the rows of ``results`` put into the table between the markers.

    Rows of other drills already there are kept; rows of the drills in
    ``results`` are replaced; lines between the markers that are not rows of
    the current table (an older table's header, a note) are dropped.
    """
    head, begin, rest = text.partition(BEGIN)
    body, end, tail = rest.partition(END)
    if not begin or not end:  # no table yet (or a marker lost): append one
        head, body, tail = text.rstrip("\n") + "\n\n", "", "\n"
    width = HEADER.split("\n", 1)[0].count("|")
    rows = {
        _key(line): line.strip()
        for line in body.splitlines()
        if _key(line) and line.strip().count("|") - line.count("\\|") == width
    }
    rows.update({_cell(r.name): row(r, run) for r in results})
    table = "\n".join([HEADER, *(rows[k] for k in sorted(rows))])
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def run_drill(name: str, drill: Callable[[bool], DrillResult], full: bool) -> DrillResult:
    """Run one drill; a drill that raises is a failed result carrying the error."""
    try:
        result = drill(full)
        if not isinstance(result, DrillResult):
            raise TypeError(f"run() returned {type(result).__name__}, not DrillResult")
    except Exception as exc:  # a crashed drill is a failed drill, with its reason
        traceback.print_exc()
        return DrillResult(name, "-", "-", "crashed", False, f"{type(exc).__name__}: {exc}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.drills")
    parser.add_argument("--full", action="store_true", help="the full forms (make drills)")
    parser.add_argument("--only", action="append", default=[], help="dNN prefix; repeatable")
    parser.add_argument("--no-write", action="store_true", help="do not touch the doc's table")
    parser.add_argument("--postgres", action="store_true", help="stacks on a throwaway PostgreSQL")
    parser.add_argument("--doc", type=Path, default=_DOC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    drills = discover()
    chosen = [n for n in drills if not args.only or any(n.startswith(o) for o in args.only)]
    if not chosen:
        parser.error(f"no drill matches {args.only}; drills: {', '.join(drills)}")
    results: list[DrillResult] = []
    with contextlib.ExitStack() as scope:
        if args.postgres:
            os.environ[DATABASE_URL_ENV] = scope.enter_context(throwaway_postgres())
        for name in chosen:
            started = time.monotonic()
            result = run_drill(name, drills[name], args.full)
            if args.postgres:
                result = dataclasses.replace(result, name=f"{result.name} (PostgreSQL)")
            results.append(result)
            took = f"  ({time.monotonic() - started:.0f} s)"
            print(
                result.line() + (f"  [{result.detail}]" if result.detail else "") + took, flush=True
            )
    if args.full and not args.no_write:
        run = f"{dt.datetime.now(dt.UTC):%Y-%m-%d}, full"
        args.doc.write_text(merge_table(args.doc.read_text(), results, run))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
