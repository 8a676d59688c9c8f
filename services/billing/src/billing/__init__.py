"""Switchyard billing: prices usage events into a ledger and keeps spend per project and month.

Modules: ``config`` (settings), ``pricing`` (catalog prices → line items),
``store`` (tables, repository), ``handlers`` (the usage-message handler),
``metrics``, ``main`` (composition root), ``runtime`` (process plumbing
shared with sessions and rag, bound for gateway_common).
"""
