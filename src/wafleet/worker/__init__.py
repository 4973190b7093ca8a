"""The worker: one TenantBot per tenant, supervised; see ARCHITECTURE.md "The worker"."""
