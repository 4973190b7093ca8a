"""The public web portal: server-rendered pages, JSON proxies and a Server-Sent Events
stream, all backed by the control plane (see ``create_app`` in ``app.py``)."""
