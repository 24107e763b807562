"""trainctl: run ML training jobs on rented GPUs through one interface."""

__version__ = "0.1.0"
