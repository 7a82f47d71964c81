"""Operations: how the running daemon is watched from outside.

- logfmt.py: log lines a machine reads (logfmt or JSON lines), from the messages the
  code already writes (`event key=%s ... (free text)`), secrets still scrubbed;
- metrics.py: Prometheus metrics on a registry of our own (no per-feed labels), and the
  `/metrics` and `/healthz` endpoints served from the daemon's own asyncio loop.

Nothing here is wired in by itself: the command line picks the log format, the daemon
starts the server and reports what it did (each module says which calls).
"""
