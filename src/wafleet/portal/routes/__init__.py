"""Portal routes: pages (auth, status, logs, settings, admin), JSON API and SSE stream."""
