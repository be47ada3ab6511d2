"""The one exception type for data mistakes a user can fix."""
from common.errors import UserError


class DataError(UserError):
    """A user-fixable data problem; the message is one line saying what to do."""
