"""The control plane: the internal HTTP API (ARCHITECTURE.md, "Control plane HTTP"),
the stale-worker job and /metrics. `create_app` builds it; `serve_control_plane` runs it."""
