"""One module per `vitgan` sub-command: add_arguments(parser) and run(args)."""
