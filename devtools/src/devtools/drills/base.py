"""What a drill reports, and how the runner finds the drills."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["DrillResult", "discover"]


@dataclass(frozen=True, slots=True)
class DrillResult:
    """One drill's outcome: the load it ran, the faults it injected, its figure."""

    name: str
    load: str
    faults: str
    figure: str
    passed: bool
    detail: str = ""

    def line(self) -> str:
        """The one line ``make drills`` prints for this drill."""
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.name:<28} {verdict:<4}  load: {self.load}; faults: {self.faults}; {self.figure}"
        )


def discover() -> dict[str, Callable[[bool], DrillResult]]:
    """Every drill module's ``run``, by module name (``d01_billing_kill``, ...), in order.

    A module that fails to import is still listed: its ``run`` raises that error.
    """
    import devtools.drills as drills

    found: dict[str, Callable[[bool], DrillResult]] = {}
    for info in sorted(pkgutil.iter_modules(drills.__path__), key=lambda i: i.name):
        if info.name.startswith("d") and info.name[1:3].isdigit():
            try:
                module: ModuleType = importlib.import_module(f"devtools.drills.{info.name}")
            except Exception as exc:  # the runner reports it as that drill's failure
                found[info.name] = _broken(exc)
            else:
                found[info.name] = module.run
    return found


def _broken(exc: Exception) -> Callable[[bool], DrillResult]:
    """A drill whose module does not import: running it raises the import's error."""

    def run(full: bool) -> DrillResult:
        raise exc

    return run
