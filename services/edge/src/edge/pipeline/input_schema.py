"""The input schema step: the call's ``variables`` must satisfy the endpoint's ``input_schema``.

Absent ``variables`` are checked as ``{}`` (so a schema's ``required`` names what is
missing). The schema sees the variables as the caller sent them, before any input
redaction: it is the caller's contract, and a redaction only changes what the model
reads. A failure is 422 ``input_schema_invalid`` with the validator's ``path`` and
``reason`` (``edge.pipeline.schemas``); the schema was compiled once, when the
endpoint changed.
"""

from __future__ import annotations

from ..endpoints import EndpointView
from .call import GatewayCall

__all__ = ["check_input_schema"]


def check_input_schema(call: GatewayCall, endpoint: EndpointView) -> None:
    """Nothing when the endpoint has no input schema or the variables satisfy it."""
    if endpoint.input_schema is None:
        return
    endpoint.input_schema.validate(dict(call.variables) if call.variables is not None else {})
