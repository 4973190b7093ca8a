"""wafleet — multi-tenant WhatsApp bot platform."""

__version__ = "0.1.0"
