"""The steps a call goes through between its surface's parsing and its answer, one module each.

The order is declared once, in ``run`` (seed 001's: rate limit, budget, guardrails,
input schema, prompt apply, provider call with fallbacks, output checks, log); read
its docstring first. Step modules: ``ratelimit`` (+ ``ratelimit_store``), ``cap``,
``guard_input`` (with the ``guardrails`` and ``pii`` library), ``input_schema`` (with
``schemas``), ``template`` and ``prompt``, ``fallbacks``, ``output``; the types they
share are in ``call``. No module here knows HTTP. This package imports nothing on
its own (``edge.endpoints`` imports its libraries, and ``run`` imports ``edge.endpoints``).
"""
