"""WhatsApp engines: the only surface a TenantBot sees (see base.py)."""
