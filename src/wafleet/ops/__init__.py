"""Operability: ``wafleet doctor`` checks, operator alerts, tenant situation wording and
per-tenant log tails. Nothing here runs at import time."""
