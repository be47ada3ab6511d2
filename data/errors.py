"""The one exception type for data mistakes a user can fix."""


class DataError(Exception):
    """A user-fixable data problem; the message is one line saying what to do."""
