"""Event sources: demo traffic and license-server logs, all feeding the pool and the one recording path."""
