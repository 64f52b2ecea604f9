"""CLI command groups: each is a thin wrapper over a typed library function."""
