"""``make bench``: the same load against a fake upstream, LiteLLM and Switchyard.

``python -m devtools.bench`` (see ``__main__``) starts each target in turn
(``upstream.Nginx`` as ``direct``, ``litellm.LiteLLM``, ``switchyard.Switchyard``),
checks that it answers correctly, loads it with wrk (``load``) while measuring
its process trees (``procstats``), and reports medians over rounds (``report``),
also into docs/benchmarks.md.

``python -m devtools.bench.soak`` (``make soak``, see ``soak``) reuses nginx and the
Switchyard stack for a long mixed load whose verdicts are flat memory and an
exact ledger.
"""
