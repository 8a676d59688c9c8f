"""Reliability drills: each fault made repeatable, with a figure (``make drills``).

The interface (issue 19): a drill is a module ``dNN_<name>.py`` in this package
with a function ``run(full: bool) -> DrillResult``; ``full`` is the form
``make drills`` is to run, otherwise the short form for ``make test``. No drill
and no runner exist on main yet; ``base.discover`` finds the modules.
"""
