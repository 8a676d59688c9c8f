"""An endpoint's JSON Schema checks: ``input_schema`` and ``output_schema``.

    input_schema   the call's ``variables`` object must satisfy it, else 422
                   ``input_schema_invalid`` (``InputSchemaInvalid``)
    output_schema  the model's content, parsed as JSON, must satisfy it, else 502
                   ``output_schema_invalid`` (``OutputSchemaInvalid``); content that is
                   not JSON fails too, with that reason (no code fences are stripped)

``compile_schema(schema, field)`` runs once per endpoint change: a schema that is
not valid JSON Schema (checked against its meta-schema), names an unknown
``$schema``, has a ``$ref`` that cannot be resolved within the schema itself, or a
``pattern`` that does not compile or backtracks catastrophically on a probe string,
raises ``InvalidRequest`` (400, code ``invalid_schema``) naming the place
(``output_schema.properties.age.minimum``). The ``CompiledSchema`` it returns is
immutable and shared by the endpoint's calls; ``validate(instance)`` and
``validate_content(content)`` raise the field's error with the validator's detail:
``path`` (JSON-path style, ``$.items[0].sku``), ``reason`` (its message, at most 300
characters) and, for the input, ``param`` (``variables.items[0].sku``). When
several things are wrong, ``jsonschema``'s ``best_match`` picks the one reported.

Validator: ``jsonschema`` (Draft 2020-12 unless ``$schema`` names another draft),
with format checking (``format`` asserts: date-time, email, uri, uuid, ... through
the ``format-nongpl`` extra's checkers). Measured on this machine with a small
object (4 properties, one ``format``): ``jsonschema`` about 44 µs a validation,
``fastjsonschema`` about 2 µs; ``jsonschema`` was chosen all the same because
``fastjsonschema`` knows drafts 4, 6 and 7 only and silently ignores 2020-12's
keywords (``prefixItems``, ``dependentRequired``, ``unevaluatedProperties`` accepted
anything in the measurement), and 44 µs is nothing next to a model call.

Safety: no reference is ever fetched (an empty ``referencing.Registry`` instead of
jsonschema's default, which would download remote ``$ref`` URLs); ``pattern`` and
``patternProperties`` run on the ``regex`` package with a time bound of
``PATTERN_TIMEOUT_S`` for one validation (a pattern that runs out fails the
instance, with that reason), and every pattern passed the save-time probes
(jsonschema's own ``additionalProperties`` / ``unevaluatedProperties`` matching of
``patternProperties`` keys still runs ``re``, unbounded, on those probed patterns);
an instance nested deeper than ``MAX_DEPTH`` arrays and objects fails with that
reason before the validator sees it (jsonschema recurses once per level, and a
``RecursionError`` raised inside its generators is not reliably catchable), never a
500.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

import orjson
import referencing
import referencing.exceptions
import referencing.jsonschema
import regex
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError, best_match
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

from gateway_common.errors import InputSchemaInvalid, InvalidRequest, OutputSchemaInvalid

from ._patterns import SLOW_PATTERN, too_slow

__all__ = ["MAX_DEPTH", "PATTERN_TIMEOUT_S", "CompiledSchema", "SchemaField", "compile_schema"]

SchemaField = Literal["input_schema", "output_schema"]

#: The deepest nesting of arrays and objects an instance may have to be checked.
MAX_DEPTH: Final = 128
#: The time all ``pattern`` checks of one validation get together.
PATTERN_TIMEOUT_S: Final = 0.1
_REASON_CHARS: Final = 300
_CONFIG_CODE: Final = "invalid_schema"
# Keywords whose values are data, not subschemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS: Final = frozenset({"enum", "const", "examples", "default"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The deadline of the validation running in this context (patterns share it).
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("schema_pattern_deadline")


class CompiledSchema:
    """One checked, compiled schema (module docstring); immutable, shared by calls."""

    def __init__(self, field: SchemaField, schema: Mapping[str, Any] | bool, validator: Validator):
        self.field = field
        self.schema = schema
        self._validator = validator

    def validate(self, instance: object) -> None:
        """Nothing if ``instance`` satisfies the schema, else the field's error."""
        if _depth_exceeds(instance, MAX_DEPTH):
            raise self._error("$", f"the value is nested more than {MAX_DEPTH} levels deep")
        token = _DEADLINE.set(time.monotonic() + PATTERN_TIMEOUT_S)
        try:
            error = best_match(self._validator.iter_errors(instance))
        except referencing.exceptions.Unresolvable as exc:
            raise self._error("$", f"the schema's reference cannot be resolved: {exc}") from None
        finally:
            _DEADLINE.reset(token)
        if error is not None:
            raise self._error(_json_path(error.absolute_path), error.message)

    def validate_content(self, content: str) -> Any:
        """``content`` parsed as JSON and validated; returns the parsed value."""
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise self._error("$", f"the content is not JSON ({exc})") from None
        self.validate(value)
        return value

    def _error(self, path: str, reason: str) -> InputSchemaInvalid | OutputSchemaInvalid:
        if len(reason) > _REASON_CHARS:
            reason = reason[: _REASON_CHARS - 1] + "…"
        message = f"{self.field}: {path}: {reason}"
        if self.field == "input_schema":
            param = "variables" + path[1:]
            return InputSchemaInvalid(message, path=path, reason=reason, param=param)
        return OutputSchemaInvalid(message, path=path, reason=reason)


def compile_schema(schema: object, field: SchemaField) -> CompiledSchema:
    """Check ``schema`` (a JSON Schema object or boolean) and compile its validator.

    Raises ``InvalidRequest`` (400, code ``invalid_schema``) naming the field and the
    place in the schema.
    """
    if not isinstance(schema, dict | bool):
        raise _config_error(field, "a JSON Schema is an object (or true / false)")
    cls: type[Validator] = Draft202012Validator
    if isinstance(schema, dict) and "$schema" in schema:
        named = validators.validator_for(schema, default=None)  # type: ignore[arg-type]
        if named is None:
            raise _config_error(f"{field}.$schema", "not a JSON Schema draft this gateway knows")
        cls = named
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = field + _dotted(exc.absolute_path)
        raise _config_error(where, f"not a valid JSON Schema: {exc.message}") from None
    patterns: dict[str, regex.Pattern[str]] = {}
    if isinstance(schema, dict):
        _check_refs(schema, cls, field)
        for path, pattern in _patterns(schema, field):
            patterns[pattern] = _compile_pattern(pattern, path)
    extended = validators.extend(
        cls,
        {"pattern": _pattern_keyword(patterns), "patternProperties": _pattern_properties(patterns)},
    )
    validator = extended(
        schema,
        format_checker=cls.FORMAT_CHECKER,
        registry=referencing.Registry(),  # type: ignore[call-arg]
    )
    return CompiledSchema(field, schema, validator)


def _pattern_keyword(patterns: Mapping[str, regex.Pattern[str]]) -> Any:
    def pattern(validator: Validator, patrn: str, instance: object, schema: object) -> Iterator:
        if validator.is_type(instance, "string"):
            assert isinstance(instance, str)
            matched = _search(patterns, patrn, instance)
            if matched is None:
                yield ValidationError(f"checking {patrn!r} took too long")
            elif not matched:
                yield ValidationError(f"{instance!r} does not match {patrn!r}")

    return pattern


def _pattern_properties(patterns: Mapping[str, regex.Pattern[str]]) -> Any:
    def pattern_properties(
        validator: Validator, properties: Mapping[str, Any], instance: object, schema: object
    ) -> Iterator:
        if not validator.is_type(instance, "object"):
            return
        assert isinstance(instance, dict)
        for patrn, subschema in properties.items():
            for key, value in instance.items():
                matched = _search(patterns, patrn, key)
                if matched is None:
                    yield ValidationError(f"checking {patrn!r} took too long")
                    return
                if matched:
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    return pattern_properties


def _search(patterns: Mapping[str, regex.Pattern[str]], patrn: str, text: str) -> bool | None:
    """Whether ``patrn`` finds a match in ``text``; ``None`` when the time ran out."""
    compiled = patterns.get(patrn)
    if compiled is None:  # a pattern not seen at compile time (not in a schema position)
        compiled = regex.compile(patrn)
    remaining = _DEADLINE.get(time.monotonic() + PATTERN_TIMEOUT_S) - time.monotonic()
    if remaining <= 0:
        return None
    try:
        return compiled.search(text, timeout=remaining) is not None
    except TimeoutError:
        return None


def _check_refs(schema: dict[str, Any], cls: type[Validator], field: str) -> None:
    """Every ``$ref`` / ``$dynamicRef`` must resolve inside the schema (or a meta-schema)."""
    specification = referencing.jsonschema.specification_with(
        cls.META_SCHEMA.get("$id", ""), default=referencing.jsonschema.DRAFT202012
    )
    resource = specification.create_resource(schema)
    registry: referencing.Registry[Any] = SPECIFICATIONS.combine(referencing.Registry())
    resolver = registry.resolver_with_root(resource)

    def walk(node: object, resolver: Any, path: str, root: bool) -> None:  # a referencing.Resolver
        if isinstance(node, dict):
            if not root and isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(specification.create_resource(node))
            for key, value in node.items():
                where = f"{path}.{key}"
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    try:
                        resolver.lookup(value)
                    except referencing.exceptions.Unresolvable:
                        raise _config_error(
                            where,
                            f"{value!r} does not resolve within the schema "
                            "(the gateway fetches no remote schemas)",
                        ) from None
                elif key not in _DATA_KEYWORDS:
                    walk(value, resolver, where, False)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, resolver, f"{path}[{i}]", False)

    walk(schema, resolver, field, True)


def _patterns(node: object, path: str) -> Iterator[tuple[str, str]]:
    """``(path, pattern)`` of every ``pattern`` value and ``patternProperties`` key."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "pattern" and isinstance(value, str):
                yield where, value
            elif key == "patternProperties" and isinstance(value, dict):
                for pattern, sub in value.items():
                    yield f"{where}[{orjson.dumps(pattern).decode()}]", pattern
                    yield from _patterns(sub, f"{where}[{orjson.dumps(pattern).decode()}]")
            elif key not in _DATA_KEYWORDS:
                yield from _patterns(value, where)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _patterns(item, f"{path}[{i}]")


def _compile_pattern(pattern: str, path: str) -> regex.Pattern[str]:
    # jsonschema itself also runs patternProperties keys with ``re`` (additionalProperties):
    # a pattern must be valid for both engines.
    try:
        re.compile(pattern)
        compiled = regex.compile(pattern)
    except (re.error, regex.error) as exc:
        raise _config_error(path, f"not a valid regular expression: {exc}") from None
    if too_slow(compiled):
        raise _config_error(path, SLOW_PATTERN)
    return compiled


def _depth_exceeds(instance: object, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iterative walk)."""
    stack: list[tuple[object, int]] = [(instance, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth == limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def _config_error(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path, code=_CONFIG_CODE)


def _json_path(path: Any) -> str:
    """``$``, then ``.key``, ``["odd key"]`` or ``[index]`` per step."""
    out = "$"
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _IDENTIFIER.fullmatch(step):
            out += f".{step}"
        else:
            out += f"[{orjson.dumps(step).decode()}]"
    return out


def _dotted(path: Any) -> str:
    """A place in the schema itself, as the admin API's ``param`` (``.properties.a``)."""
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)
