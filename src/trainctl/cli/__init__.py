"""The command-line interface; subcommands are imported only when run."""
