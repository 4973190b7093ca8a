"""Routers of the control plane: portal (tenant-scoped), admin (operators), health."""
