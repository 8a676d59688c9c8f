"""Switchyard billing: prices usage events into a ledger, keeps spend, budgets and credits.

Modules: ``config`` (settings), ``pricing`` (the reloading price book over
``gateway_common.pricing``), ``store`` (tables; ``repo`` the ledger writer,
``budgets`` leases/budgets/credits, ``reports`` the read side), ``handlers``
(the usage-message handler), ``api`` (the ``billing.*`` request/reply
subjects), ``reconcile`` (stream vs ledger), ``metrics``, ``main``
(composition root).
"""
