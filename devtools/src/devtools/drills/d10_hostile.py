"""d10: hostile input over real sockets: a typed 4xx (or a freed connection), never a 5xx or a hang.

Every case talks raw HTTP/1.1 to a running edge (``asyncio`` streams, no client
library that would tidy the input up) and judges what comes back:

- ``body-10mib-content-length`` / ``body-10mib-chunked``: a 10 MiB chat body is
  answered 413 in OpenAI's shape before the client has sent it all;
- ``invalid-utf8``, ``deep-array``, ``deep-object``: a 4xx in OpenAI's shape;
- ``provider-key-bare-cr`` / ``-bare-lf`` / ``-obs-fold`` / ``-crlf-encoded``: header
  injection attempts in ``X-Provider-Key``: a 4xx in the API's shape, or (for the
  percent-encoded value, a legal header) anything but a 5xx;
- ``slow-loris``: a partial request head is answered 408 and its connection closed
  within the edge's header timeout (``GATEWAY_HEADER_TIMEOUT_S``, default 10 s).

The short and the full form run the same cases (the full form three times each).
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from devtools.drills.base import DrillResult
from devtools.drills.kit import DrillStack, drill_stack

__all__ = ["CASES", "Case", "Target", "Verdict", "run", "run_case", "target"]

NAME = "d10 hostile input"
MIB = 1024 * 1024
#: The edge's default ``GATEWAY_HEADER_TIMEOUT_S`` plus slack.
SLOW_LORIS_LIMIT_S = 15.0
_CASE_DEADLINE_S = 30.0
_MSG = b'"messages":[{"role":"user","content":"hi"}]'


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one case saw: ``ok`` and, when not, why."""

    case: str
    ok: bool
    status: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    api_key: str


Case = Callable[[Target], Awaitable[Verdict]]


def _split(data: bytes) -> tuple[int | None, bytes]:
    """(status, body) of a raw HTTP/1.1 response (the body as sent, chunked or not)."""
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, body


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return body
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def _shape(body: bytes, *, anthropic: bool = False) -> str:
    """ "" when ``body`` is the API's error object, else what is wrong with it."""
    for candidate in (body, _dechunk(body)):
        try:
            doc = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if anthropic:
            ok = isinstance(doc, dict) and doc.get("type") == "error"
            ok = ok and isinstance(doc.get("error"), dict) and "message" in doc["error"]
        else:
            error = doc.get("error") if isinstance(doc, dict) else None
            ok = isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)
        return "" if ok else f"not the API's error object: {candidate[:120]!r}"
    return f"not JSON: {body[:120]!r}"


async def _exchange(target: Target, head: bytes, body: bytes = b"") -> tuple[bytes, float]:
    """Send ``head`` + ``body``, read until the server closes (or ``_CASE_DEADLINE_S``)."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(head + body)
        await writer.drain()
        data = await asyncio.wait_for(_read_response(reader), timeout=_CASE_DEADLINE_S)
    finally:
        writer.close()
    return data, time.monotonic() - start


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One response: up to its Content-Length, the end of its chunks, or EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)
    if b"transfer-encoding: chunked" in lower:
        return head + await reader.readuntil(b"0\r\n\r\n")
    return head + await reader.read()


def _request_head(target: Target, path: bytes, extra: bytes = b"", length: int | None = 0) -> bytes:
    head = (
        b"POST " + path + b" HTTP/1.1\r\nHost: edge\r\n"
        b"Authorization: Bearer " + target.api_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n" + extra
    )
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + b"\r\n"


def _body_case(name: str, body: bytes) -> Case:
    async def case(target: Target) -> Verdict:
        data, _ = await _exchange(
            target, _request_head(target, b"/v1/chat/completions", length=len(body)), body
        )
        status, raw = _split(data)
        if status is None or not 400 <= status < 500:
            return Verdict(name, False, status, f"status {status}")
        wrong = _shape(raw)
        return Verdict(name, not wrong, status, wrong)

    return case


async def _big_body(target: Target, *, chunked: bool) -> Verdict:
    """10 MiB sent in 64 KiB pieces while watching for the answer; 413 before the end."""
    name = "body-10mib-chunked" if chunked else "body-10mib-content-length"
    return await asyncio.to_thread(_big_body_blocking, target, name, chunked)


def _big_body_blocking(target: Target, name: str, chunked: bool) -> Verdict:
    """A blocking socket, so that an answer already received survives a refused write."""
    size, piece = 10 * MIB, 64 * 1024
    extra = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    head = _request_head(
        target, b"/v1/chat/completions", extra=extra, length=None if chunked else size
    )
    filler = (b'{"model":"mock-chat",' + _MSG + b',"metadata":{"x":"' + b"a" * piece)[:piece]
    sent, data = 0, b""
    deadline = time.monotonic() + _CASE_DEADLINE_S
    with socket.socket() as sock:
        # A small send buffer: what counts as sent has nearly all reached the edge.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, piece)
        sock.settimeout(_CASE_DEADLINE_S)
        sock.connect((target.host, target.port))
        sock.sendall(head)
        try:
            while sent < size:
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer (or the close) came before the end of the body
                part = filler[: size - sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
            if chunked and sent >= size:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused mid-body: read what it answered
        try:
            while time.monotonic() < deadline:
                got = sock.recv(65536)
                if not got:
                    break
                data += got
                status, raw = _split(data)
                if status is not None and b"\r\n\r\n" in data and _shape(raw) == "":
                    break
        except OSError as exc:
            if not data:
                return Verdict(name, False, None, f"no answer before the close: {exc!r}")
    if time.monotonic() >= deadline:
        return Verdict(name, False, None, f"hang (sent {sent} bytes)")
    status, raw = _split(data)
    if status != 413:
        return Verdict(name, False, status, f"status {status} after {sent} bytes")
    if sent >= size:
        return Verdict(name, False, status, "413 only after the whole body was sent")
    wrong = _shape(raw)
    return Verdict(name, not wrong, status, wrong or f"413 after {sent / MIB:.1f} MiB of 10")


def _provider_key_case(name: str, value: bytes, *, must_refuse: bool) -> Case:
    async def case(target: Target) -> Verdict:
        body = b'{"model":"mock-chat",' + _MSG + b"}"
        extra = b"X-Provider-Key: " + value + b"\r\n"
        head = _request_head(target, b"/v1/chat/completions", extra=extra, length=len(body))
        data, _ = await _exchange(target, head, body)
        status, raw = _split(data)
        if status is None or status >= 500:
            return Verdict(name, False, status, f"status {status}")
        if must_refuse and not 400 <= status < 500:
            return Verdict(name, False, status, f"accepted: status {status}")
        if status >= 400:
            wrong = _shape(raw)
            if wrong:
                return Verdict(name, False, status, wrong)
        if b"injected" in data.lower():
            return Verdict(name, False, status, "the injected header was echoed")
        return Verdict(name, True, status)

    return case


async def _slow_loris(target: Target) -> Verdict:
    """Half a request head, then silence: the edge must answer 408 and close."""
    name = "slow-loris"
    reader, writer = await asyncio.open_connection(target.host, target.port)
    start = time.monotonic()
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=SLOW_LORIS_LIMIT_S)
    except TimeoutError:
        return Verdict(name, False, None, f"still open after {SLOW_LORIS_LIMIT_S:.0f} s")
    finally:
        writer.close()
    waited = time.monotonic() - start
    status, raw = _split(data)
    if status != 408:
        return Verdict(name, False, status, f"closed after {waited:.1f} s with status {status}")
    wrong = _shape(raw)
    return Verdict(name, not wrong, status, wrong or f"408 and closed after {waited:.1f} s")


async def _anthropic_bad_head(target: Target) -> Verdict:
    name = "messages-bare-lf-header"
    head = _request_head(target, b"/v1/messages", extra=b"X-Provider-Key: a\nInjected: 1\r\n")
    data, _ = await _exchange(target, head)
    status, raw = _split(data)
    if status is None or not 400 <= status < 500:
        return Verdict(name, False, status, f"status {status}")
    wrong = _shape(raw, anthropic=True)
    return Verdict(name, not wrong, status, wrong)


CASES: dict[str, Case] = {
    "body-10mib-content-length": lambda t: _big_body(t, chunked=False),
    "body-10mib-chunked": lambda t: _big_body(t, chunked=True),
    "invalid-utf8": _body_case(
        "invalid-utf8", b'{"model":"mock-chat",' + _MSG[:-3] + b'\xff\xfe"}]}'
    ),
    "deep-array": _body_case("deep-array", b"[" * 5000 + b"]" * 5000),
    "deep-object": _body_case(
        "deep-object",
        b'{"model":"mock-chat",' + _MSG + b',"metadata":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
    ),
    "provider-key-bare-cr": _provider_key_case(
        "provider-key-bare-cr", b"sk-a\rInjected: yes", must_refuse=True
    ),
    "provider-key-bare-lf": _provider_key_case(
        "provider-key-bare-lf", b"sk-a\nInjected: yes", must_refuse=True
    ),
    "provider-key-obs-fold": _provider_key_case(
        "provider-key-obs-fold", b"sk-a\r\n Injected: yes", must_refuse=False
    ),
    "provider-key-crlf-encoded": _provider_key_case(
        "provider-key-crlf-encoded", b"sk-a%0d%0aInjected: yes", must_refuse=False
    ),
    "messages-bare-lf-header": _anthropic_bad_head,
    "slow-loris": _slow_loris,
}


def target(base_url: str, api_key: str) -> Target:
    """The edge at ``base_url`` (``http://host:port``), called with ``api_key``."""
    url = urlsplit(base_url)
    return Target(url.hostname or "127.0.0.1", url.port or 80, api_key)


async def run_case(edge: Target, name: str) -> Verdict:
    """One case against ``edge``; a case that raises is a failed verdict."""
    try:
        return await CASES[name](edge)
    except Exception as exc:  # the drill reports it, never crashes on it
        return Verdict(name, False, None, f"raised {exc!r}")


def run(full: bool, kit: DrillStack | None = None) -> DrillResult:
    """The drill on ``kit`` (a stack of its own when None)."""
    if kit is not None:
        return asyncio.run(_drill(kit, 3 if full else 1))
    with drill_stack() as own:
        return asyncio.run(_drill(own, 3 if full else 1))


async def _drill(kit: DrillStack, rounds: int) -> DrillResult:
    start = time.monotonic()
    edge = target(kit.base_url, kit.api_key)
    verdicts: list[Verdict] = []
    for _ in range(rounds):
        # Concurrently: the slow-loris case waits ~10 s, the rest need not wait for it.
        verdicts += await asyncio.gather(*(run_case(edge, name) for name in CASES))
    ok = sum(1 for v in verdicts if v.ok)
    fives = sum(1 for v in verdicts if v.status is not None and v.status >= 500)
    hangs = sum(1 for v in verdicts if "hang" in v.detail or "still open" in v.detail)
    loris = [v.detail for v in verdicts if v.case == "slow-loris"]
    big = [v.detail for v in verdicts if v.case.startswith("body-10mib") and v.ok]
    return DrillResult(
        name=NAME,
        load=f"{len(CASES)} hostile cases x {rounds} over raw sockets",
        faults="10 MiB bodies, bad UTF-8, deep JSON, CR/LF in X-Provider-Key, slow-loris",
        figure=(
            f"typed answers: {ok}/{len(verdicts)}; 5xx: {fives}; hangs: {hangs}; "
            f"{'; '.join(sorted(set(big)))}; slow-loris: {loris[0] if loris else '-'}; "
            f"{time.monotonic() - start:.1f} s"
        ),
        passed=ok == len(verdicts) and fives == 0 and hangs == 0,
        detail="; ".join(f"{v.case}: {v.detail}" for v in verdicts if not v.ok),
    )
