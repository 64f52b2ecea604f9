"""Entity-level metrics and reports."""
