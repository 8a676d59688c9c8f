"""``python -m devtools.drills``: the table it writes into docs/reliability.md, and its runner.

No drill runs here: ``discover`` is replaced by drills that pass, fail, raise or
cannot import, and the doc is a temporary file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.drills import __main__ as runner
from devtools.drills import base
from devtools.drills.base import DrillResult

_OLD = """# Reliability

intro

<!-- drills:begin -->
Not yet run in full form. Old note:

| drill | verdict | figure |
| --- | --- | --- |
| d06 router SIGKILL | PASS | 3355 requests |
| d08 failover | PASS | load: a | faults: b | figure c | 2026-12-01, full |
<!-- drills:end -->

after the table
"""


def _result(name: str, passed: bool = True, figure: str = "fig") -> DrillResult:
    return DrillResult(name, "load", "faults", figure, passed, "" if passed else "why")


def _rows(text: str) -> list[str]:
    body = text.split(runner.BEGIN, 1)[1].split(runner.END, 1)[0]
    return [
        line
        for line in body.strip().splitlines()
        if line.startswith("| d") and "| drill |" not in line
    ]


def test_rows_are_replaced_kept_and_sorted_and_the_rest_of_the_doc_is_untouched() -> None:
    text = runner.merge_table(
        _OLD, [_result("d09 resets"), _result("d04 cluster", False)], "2026-12-07, full"
    )
    assert text.startswith("# Reliability\n\nintro\n\n<!-- drills:begin -->\n| drill |")
    assert text.endswith("<!-- drills:end -->\n\nafter the table\n")
    assert "Old note" not in text and "| drill | verdict | figure |" not in text
    rows = _rows(text)
    # the old 3-column d06 row is dropped; d08's row of the current shape is kept
    assert [r.split(" ")[1] for r in rows] == ["d04", "d08", "d09"]
    assert rows[0] == "| d04 cluster | FAIL (why) | load | faults | fig | 2026-12-07, full |"
    assert rows[1] == "| d08 failover | PASS | load: a | faults: b | figure c | 2026-12-01, full |"
    again = runner.merge_table(text, [_result("d04 cluster", figure="new")], "2026-12-08, full")
    assert _rows(again)[0] == "| d04 cluster | PASS | load | faults | new | 2026-12-08, full |"
    assert _rows(again)[1:] == rows[1:]


def test_drills_sharing_a_number_keep_a_row_each() -> None:
    text = runner.merge_table(_OLD, [_result("d10 fuzz"), _result("d10 hostile")], "run")
    again = runner.merge_table(text, [_result("d10 hostile", figure="new")], "run")
    assert [r.split(" | ")[0] for r in _rows(again)] == [
        "| d08 failover",
        "| d10 fuzz",
        "| d10 hostile",
    ]
    assert _rows(again)[2].endswith("| new | run |")


def test_cells_cannot_break_the_table() -> None:
    text = runner.merge_table("", [_result("d01 x", figure="a | b\nc")], "run")
    assert _rows(text) == ["| d01 x | PASS | load | faults | a \\| b c | run |"]
    assert _rows(runner.merge_table(text, [_result("d02 y")], "run"))[0].startswith("| d01 x |")


def test_a_doc_without_markers_gets_the_table_appended() -> None:
    text = runner.merge_table("# Doc\n", [_result("d04 c")], "run")
    assert text.startswith("# Doc\n\n<!-- drills:begin -->\n")
    assert text.endswith("<!-- drills:end -->\n") and len(_rows(text)) == 1


def _boom(full: bool) -> DrillResult:
    raise RuntimeError("stack did not start")


def test_a_drill_that_raises_or_does_not_import_is_a_fail_line_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drills = {
        "d01_fine": lambda full: _result("d01 fine"),
        "d02_boom": _boom,
        "d03_broken": base._broken(ImportError("no module named x")),
    }
    monkeypatch.setattr(runner, "discover", lambda: drills)
    doc = tmp_path / "reliability.md"
    doc.write_text(_OLD)
    assert runner.main(["--full", "--doc", str(doc)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["d01", "d02_boom", "d03_broken"]
    assert "FAIL" in out[1] and "RuntimeError: stack did not start" in out[1]
    rows = _rows(doc.read_text())
    assert [r.split(" ")[1] for r in rows] == ["d01", "d02_boom", "d03_broken", "d08"]
    assert "FAIL (ImportError: no module named x)" in rows[2]
    assert runner.main(["--full", "--only", "d01", "--doc", str(doc)]) == 0
    assert len(_rows(doc.read_text())) == 4  # the others' rows are kept


def test_short_forms_and_no_write_leave_the_doc_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "discover", lambda: {"d01_fine": lambda full: _result("d01")})
    doc = tmp_path / "reliability.md"
    doc.write_text(_OLD)
    assert runner.main(["--doc", str(doc)]) == 0
    assert runner.main(["--full", "--no-write", "--doc", str(doc)]) == 0
    assert doc.read_text() == _OLD
    with pytest.raises(SystemExit):
        runner.main(["--only", "d99", "--doc", str(doc)])
