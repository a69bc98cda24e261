"""One module per `irreid-edge` subcommand (see runtime/cli.py)."""
