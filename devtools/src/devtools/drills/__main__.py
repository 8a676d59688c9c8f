"""``python -m devtools.drills [--full] [--only dNN ...]``: run the drills, one line each.

With ``--full`` (``make drills``) the table of results is written into
docs/reliability.md between its markers. Exit status 1 when any drill fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devtools.drills.base import DrillResult, discover

_DOC = Path(__file__).resolve().parents[4] / "docs" / "reliability.md"
BEGIN = "<!-- drills:begin -->"
END = "<!-- drills:end -->"


def table(results: list[DrillResult]) -> str:
    """The results as a Markdown table."""
    rows = ["| drill | verdict | load | faults | figure |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        verdict = "PASS" if r.passed else f"FAIL ({r.detail})" if r.detail else "FAIL"
        rows.append(f"| {r.name} | {verdict} | {r.load} | {r.faults} | {r.figure} |")
    return "\n".join(rows)


def write_table(doc: Path, results: list[DrillResult], form: str) -> None:
    """Replace what is between the markers of ``doc`` with the table."""
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    body = f"{BEGIN}\nForm: {form}.\n\n{table(results)}\n{END}"
    doc.write_text(head + body + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.drills")
    parser.add_argument("--full", action="store_true", help="the full forms (make drills)")
    parser.add_argument("--only", action="append", default=[], help="dNN prefix; repeatable")
    args = parser.parse_args(argv)
    drills = discover()
    chosen = [
        name for name in drills if not args.only or any(name.startswith(o) for o in args.only)
    ]
    results: list[DrillResult] = []
    for name in chosen:
        try:
            result = drills[name](args.full)
        except Exception as exc:  # a drill that crashes is a failed drill, with its reason
            result = DrillResult(name, "-", "-", "crashed", False, f"{type(exc).__name__}: {exc}")
        results.append(result)
        print(result.line() + (f"  [{result.detail}]" if result.detail else ""), flush=True)
    if args.full and not args.only:
        write_table(_DOC, results, "full (make drills)")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
