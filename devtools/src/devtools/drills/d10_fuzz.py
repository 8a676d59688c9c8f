"""d10 fuzz: schemathesis against the edge's own OpenAPI document, over loopback.

The document is read from the running edge (``/openapi.json``); every operation
(``/v1``, ``/api``, ``/admin``, ``/channel/v1``, ``/console/api``, ops) is fuzzed in
schemathesis' positive and negative generation modes, once per caller:

- ``key``: the stack's dev key (project ``default``, every scope);
- ``operator``: the admin token;
- ``foreign``: a key of another project, made for the drill (every scope).

Each answer is judged by every check schemathesis has (``CHECKS.get_all()``, the
CLI's ``--checks all``: ``not_a_server_error``, ``status_code_conformance``,
``content_type_conformance``, ``response_schema_conformance``,
``negative_data_rejection``, ``positive_data_acceptance``, ...). A request that
gets no answer within ``REQUEST_TIMEOUT_S`` is a hang. The figure: operations,
requests, findings (0 to pass), 5xx, hangs.

Short form (``make test``): ``SHORT_EXAMPLES`` per operation, caller and mode, cut
at ``SHORT_BUDGET_S``; full form (``make drills``): ``FULL_EXAMPLES``.
``fuzz`` is also d11's engine (tenant isolation).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import positive_data_acceptance

from devtools.drills.base import DrillResult
from devtools.drills.kit import DrillStack, on_kit

__all__ = [
    "FULL_EXAMPLES",
    "SHORT_BUDGET_S",
    "SHORT_EXAMPLES",
    "Finding",
    "FuzzReport",
    "foreign_key",
    "fuzz",
    "run",
]

NAME = "d10 OpenAPI fuzz"
#: Examples per operation, caller and generation mode (the full form: >= 210 per operation).
FULL_EXAMPLES, SHORT_EXAMPLES = 70, 1
#: The short form stops generating (and says so in its figure) past this many seconds.
SHORT_BUDGET_S = 20.0
REQUEST_TIMEOUT_S = 15.0
_MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
#: Not judged on operations with a JSON body: their bodies carry rules JSON Schema cannot
#: state (a catalog model name, the allowed parameter names, a unique name, a money
#: string), answered 400/404/409 in the documented shape, which the other checks judge.
_BODY_RULES = {positive_data_acceptance}
#: An answer and the case that asked it -> what is wrong with it, or None (d11's search).
Inspect = Callable[[schemathesis.Case, schemathesis.Response], str | None]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with one answer."""

    operation: str
    caller: str
    status: int | None
    what: str

    def __str__(self) -> str:
        return f"{self.operation} as {self.caller}: {self.status} {self.what}"


@dataclass(slots=True)
class FuzzReport:
    """What one ``fuzz`` run sent and found."""

    operations: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    cut_short: bool = False

    @property
    def hangs(self) -> int:
        return sum(1 for f in self.findings if f.what.startswith("hang"))

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def distinct(self) -> list[str]:
        """The findings, one line per (operation, status, check), for a report."""
        return sorted(
            {f"{f.operation}: {f.status} {f.what.splitlines()[0][:160]}" for f in self.findings}
        )


def fuzz(
    base_url: str,
    callers: Mapping[str, Mapping[str, str]],
    *,
    examples: int,
    budget_s: float | None = None,
    select: Callable[[str, str], bool] = lambda method, path: True,
    path_parameters: Callable[[str], list[dict[str, str]]] = lambda path: [{}],
    inspect: Inspect | None = None,
    checks: bool = True,
) -> FuzzReport:
    """Fuzz every operation of ``base_url``'s OpenAPI that ``select`` keeps, as each caller.

    ``callers`` maps a caller's name to its headers. ``path_parameters(path)`` lists
    path-parameter sets to pin (each run separately; ``{}`` leaves them generated).
    ``checks`` runs schemathesis' checks on each answer; ``inspect`` runs after them.
    """
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    every_check = CHECKS.get_all()
    report = FuzzReport()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the document itself is wrong about an operation
            report.findings.append(Finding("?", "-", None, f"invalid schema: {result.err()}"))
            continue
        operation = result.ok()
        method, path = operation.method.lower(), operation.path
        if not select(method, path):
            continue
        report.operations += 1
        label = f"{method.upper()} {path}"
        # A path-only operation has nothing to negate: hypothesis would search in vain.
        negatable = len(operation.body) > 0 or len(operation.query) > 0
        judged = [c for c in every_check if not (len(operation.body) and c in _BODY_RULES)]
        for pinned in path_parameters(path):
            for mode in _MODES if negatable else _MODES[:1]:
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=pinned or None
                )
                for caller, headers in callers.items():
                    if deadline is not None and time.monotonic() > deadline:
                        report.cut_short = True
                        return report
                    send = partial(
                        _one,
                        base_url=base_url,
                        label=label,
                        caller=caller,
                        headers=headers,
                        report=report,
                        inspect=inspect,
                        checks=judged if checks else [],
                    )
                    _examples(strategy, examples, send)
    return report


def _examples(strategy: Any, examples: int, test: Callable[[schemathesis.Case], None]) -> None:
    """Run ``test`` on up to ``examples`` cases drawn from ``strategy`` (generation only)."""

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    def each(case: schemathesis.Case) -> None:
        test(case)

    with contextlib.suppress(Unsatisfiable):  # e.g. nothing in this operation to negate
        each()


def _one(
    case: schemathesis.Case,
    *,
    base_url: str,
    label: str,
    caller: str,
    headers: Mapping[str, str],
    report: FuzzReport,
    inspect: Inspect | None,
    checks: list[Any],
) -> None:
    """Send ``case`` and record what is wrong with its answer; never raises."""
    report.requests += 1
    try:
        response = case.call(base_url=base_url, headers=dict(headers), timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # a timeout, a reset: the drill records it
        what = "hang" if "timed out" in str(exc).lower() else "no answer"
        report.findings.append(Finding(label, caller, None, f"{what}: {exc!r}"[:300]))
        return
    report.statuses[response.status_code] += 1
    if checks:
        try:
            case.validate_response(response, checks=checks, headers=dict(headers))
        except FailureGroup as group:
            for failure in group.exceptions:
                report.findings.append(
                    Finding(
                        label,
                        caller,
                        response.status_code,
                        f"{failure.title}: {failure.message} <- {str(case.body)[:200]}",
                    )
                )
    if inspect is not None and (leak := inspect(case, response)):
        report.findings.append(Finding(label, caller, response.status_code, leak))


def foreign_key(base_url: str, admin_token: str, name: str) -> tuple[str, str, str]:
    """A new project ``name`` with one every-scope key: (project id, key id, key)."""
    operator = {"authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base_url, timeout=30, headers=operator) as http:
        project = http.post("/admin/projects", json={"name": name})
        project.raise_for_status()
        pid = project.json()["id"]
        scopes = ["chat", "embeddings", "responses", "admin", "collections:write"]
        key = http.post(
            f"/admin/projects/{pid}/keys", json={"name": f"{name}-key", "scopes": scopes}
        )
        key.raise_for_status()
        return pid, key.json()["id"], key.json()["key"]


def callers(kit: DrillStack) -> dict[str, dict[str, str]]:
    """The drill's three callers (module docstring) and their headers."""
    assert kit.stack.config.admin_token is not None
    _, _, foreign = foreign_key(
        kit.base_url, kit.stack.config.admin_token, f"d10-foreign-{secrets.token_hex(4)}"
    )
    return {
        "key": kit.headers,
        "operator": {"Authorization": f"Bearer {kit.stack.config.admin_token}"},
        "foreign": {"Authorization": f"Bearer {foreign}"},
    }


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    return on_kit(kit, lambda running: _drill(running, full))


def _drill(kit: DrillStack, full: bool) -> DrillResult:
    start = time.monotonic()
    examples = FULL_EXAMPLES if full else SHORT_EXAMPLES
    report = fuzz(
        kit.base_url,
        callers(kit),
        examples=examples,
        budget_s=None if full else SHORT_BUDGET_S,
    )
    findings = report.distinct()
    return DrillResult(
        name=NAME,
        load=(
            f"{report.operations} operations x 3 callers x 2 modes x <= {examples} examples"
            f"{' (cut at the time budget)' if report.cut_short else ''}: {report.requests} requests"
        ),
        faults="schemathesis-generated valid and invalid input, own/operator/foreign credentials",
        figure=(
            f"findings: {len(findings)}; 5xx: {report.server_errors}; hangs: {report.hangs}; "
            f"statuses: {dict(sorted(report.statuses.items()))}; {time.monotonic() - start:.1f} s"
        ),
        passed=not findings and report.server_errors == 0 and report.operations > 0,
        detail="; ".join(findings[:20]),
    )
