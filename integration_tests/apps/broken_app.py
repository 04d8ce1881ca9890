"""A module that raises on import: `run broken_app:app` must fail with a readable error."""

raise RuntimeError("broken_app fails to import on purpose")

app = None  # never reached
