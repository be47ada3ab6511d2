"""The project's error types: a user mistake is shown as one line; anything else keeps its traceback."""


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file, unusable data): one ``error:`` line, exit 2."""
