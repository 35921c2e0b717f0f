"""Command-line front end: one module per command group, loaded on demand."""
