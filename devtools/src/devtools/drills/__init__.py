"""Reliability drills: each fault made repeatable, with a figure (``make drills``).

A drill is a module ``dNN_<name>.py`` in this package with a function
``run(full: bool) -> DrillResult``: ``full`` is the form ``make drills`` runs,
otherwise the short form that ``make test`` runs through
``tests/integration/test_drills.py``. ``python -m devtools.drills`` runs them
all (or those named), prints one line per drill and writes the table to
docs/reliability.md.
"""
