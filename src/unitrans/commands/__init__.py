"""CLI command groups: each is a thin wrapper over a typed library function."""

PREDICT_PROCESSES_HELP = (
    "CPU processes that share the batches, one thread each (0 = one per thread of this process; "
    "the probabilities are the same, it is only faster)."
)
"""`--processes` of `unitrans predict` and `unitrans tag` (`unitrans.model.predict.resolve_processes`)."""
