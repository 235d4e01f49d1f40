"""The ``robust-mmr`` command line: one module per subcommand group, assembled in ``main``."""
