from __future__ import annotations

import pytest

from router.providers.sse import ServerSentEvent, SSEDecoder

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a":1}\n\n'
    b"event: error\r\n"
    b'data: {"b":\r\n'
    b"data: 2}\r\n\r\n"
    b"id: 7\nretry: 10\ndata:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent("", b'{"a":1}'),
    ServerSentEvent("error", b'{"b":\n2}'),
    ServerSentEvent("", b"no-space"),
    ServerSentEvent("", b"[DONE]"),
]


@pytest.mark.parametrize("size", [1, 2, 5, 17, len(STREAM)])
def test_events_survive_any_split(size: int) -> None:
    decoder = SSEDecoder()
    events = []
    for at in range(0, len(STREAM), size):
        events += decoder.feed(STREAM[at : at + size])
    events += decoder.flush()
    assert events == EXPECTED


def test_flush_dispatches_an_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x":1}') == []
    assert decoder.flush() == [ServerSentEvent("", b'{"x":1}')]
    assert decoder.flush() == []
