"""Billing storage: tables (``models``), the ledger writer (``repo``), budgets/credits/leases (``budgets``), reads (``reports``)."""
