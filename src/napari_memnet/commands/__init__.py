"""The ``memnet`` subcommands, one module each (``register(subparsers)``), and the terminal progress bar."""
