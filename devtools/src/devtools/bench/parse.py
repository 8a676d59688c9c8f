"""The edge's one body parse, timed alone: ``python -m devtools.bench.parse``.

Every ``/v1`` request is parsed once against its ``gateway_common.openai``
model (``edge.api.proxy.Proxy.read``); the field checks ride on that parse.
This times ``model_validate_json`` per body with ``timeit`` (``--number``
parses per repeat, ``--repeat`` repeats) and prints the median microseconds
per parse. The bodies:

    bench      what ``make bench`` sends (``load.chat_body``): two messages, max_tokens
    sampled    the same with every bounded chat parameter set (temperature, top_p, n,
               penalties, logprobs/top_logprobs, a 3-entry logit_bias)
    responses  a Responses API call with temperature, top_p, max_output_tokens

To compare two versions of the models, run it alternately with and without
``PYTHONPATH`` pointing at another tree's ``libs/gateway-common/src`` (figures:
docs/benchmarks.md, "The edge's range checks on its one parse").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence

import orjson

from gateway_common.openai import ChatCompletionRequest, ResponsesRequest

from .load import chat_body

__all__ = ["BODIES", "main", "time_parse"]

_SAMPLED = {
    **orjson.loads(chat_body("bench-chat", stream=False)),
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 1,
    "presence_penalty": 0.1,
    "frequency_penalty": -0.1,
    "logprobs": True,
    "top_logprobs": 3,
    "logit_bias": {"50256": -100, "198": 5, "13": 1.5},
}
_RESPONSES = {
    "model": "bench-chat",
    "input": "Say hello to the benchmark.",
    "instructions": "You are a helpful assistant.",
    "temperature": 0.7,
    "top_p": 0.9,
    "max_output_tokens": 64,
}

#: name -> (parse function, body bytes)
BODIES: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "bench": (ChatCompletionRequest.model_validate_json, chat_body("bench-chat", stream=False)),
    "sampled": (ChatCompletionRequest.model_validate_json, orjson.dumps(_SAMPLED)),
    "responses": (ResponsesRequest.model_validate_json, orjson.dumps(_RESPONSES)),
}


def time_parse(parse: Callable[[bytes], object], body: bytes, *, number: int, repeat: int) -> float:
    """Median microseconds per ``parse(body)`` over ``repeat`` runs of ``number`` calls."""
    runs = timeit.repeat(lambda: parse(body), number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    """Print one line per body: its name, size and median microseconds per parse."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    for name, (parse, body) in BODIES.items():
        micros = time_parse(parse, body, number=args.number, repeat=args.repeat)
        sys.stdout.write(f"{name:10} {len(body):4d} B  {micros:6.2f} us\n")


if __name__ == "__main__":
    main()
