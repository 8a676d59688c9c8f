"""An endpoint's ``prompt_template``: ``{{name}}`` placeholders filled from the call's ``variables``.

A placeholder is ``{{name}}`` (spaces inside the braces allowed: ``{{ name }}``), a
name being a letter or ``_`` then letters, digits or ``_``. Anything else in the
template, single braces included, is literal text. A string value is inserted as
it is; any other JSON value (number, boolean, null, array, object) as its compact
JSON. A value is inserted once and never re-scanned, so a variable whose value
contains ``{{other}}`` does not pull in ``other``.

A placeholder without its variable refuses the call: 422 ``missing_variable``,
``param`` ``variables.<name>`` (the first missing one), the message naming every
missing name. Variables the template does not use are allowed (an input schema may
still check them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from gateway_common.errors import InvalidRequest

__all__ = ["MISSING_VARIABLE", "fill", "placeholders", "render"]

MISSING_VARIABLE: Final = "missing_variable"
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(template: str) -> list[str]:
    """The variable names ``template`` uses, each once, in order of first use."""
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def render(template: str, variables: Mapping[str, Any] | None) -> str:
    """``template`` with every placeholder filled; 422 ``missing_variable`` otherwise."""
    given = variables or {}
    missing = [name for name in placeholders(template) if name not in given]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise InvalidRequest(
            f"Missing variable{'s' if len(missing) > 1 else ''} {names}: the endpoint's "
            "prompt template needs "
            f"{'them' if len(missing) > 1 else 'it'} in 'variables'.",
            param=f"variables.{missing[0]}",
            code=MISSING_VARIABLE,
            http_status=422,
        )
    return _PLACEHOLDER.sub(lambda m: _text(given[m.group(1)]), template)


def fill(template: str, variables: Mapping[str, Any] | None) -> str:
    """``template`` with the placeholders that have a variable filled, the others left as
    they are (never refuses: for estimates made before the template step runs)."""
    given = variables or {}
    return _PLACEHOLDER.sub(
        lambda m: _text(given[m.group(1)]) if m.group(1) in given else m.group(0), template
    )
