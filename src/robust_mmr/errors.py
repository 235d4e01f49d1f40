"""Exceptions shared across the package."""


class InputError(ValueError):
    """Bad user input (a path, a name, a value): the message says what is wrong and what is allowed.

    The CLI prints it as one line and exits with code 2, without a traceback.
    """
