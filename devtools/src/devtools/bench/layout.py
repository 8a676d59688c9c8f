"""Where the benchmark's inputs live and how its templates are filled.

Inputs are versioned under ``bench/`` at the repository root (nginx config and
bodies, the wrk script, LiteLLM's requirements and config, Switchyard's
catalog). Everything the harness makes (virtualenvs, rendered configs, logs,
the stack's data, profiles) goes under ``bench/.work/``, which git ignores.

Templates mark a value as ``@NAME@``; ``render`` refuses to leave one unfilled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO_ROOT", "BenchLayout", "render"]

REPO_ROOT = Path(__file__).resolve().parents[4]
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``@NAME@`` replaced by ``values[NAME]``.

    Raises ``KeyError`` naming a placeholder that has no value.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for @{name}@")
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


@dataclass(frozen=True)
class BenchLayout:
    """The input directory and the scratch directory of one benchmark run."""

    inputs: Path = REPO_ROOT / "bench"
    work: Path = REPO_ROOT / "bench" / ".work"

    def input(self, relative: str) -> Path:
        """A versioned input file, e.g. ``upstream/nginx.conf``."""
        return self.inputs / relative

    def scratch(self, name: str) -> Path:
        """A directory under the work dir (created if missing)."""
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path
