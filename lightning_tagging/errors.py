"""The one exception type for mistakes a user can fix.

`lt` prints a `UserError` as a single line (what is wrong, what to do) instead of a
traceback; set ``LT_DEBUG=1`` to see the traceback anyway.
"""


class UserError(ValueError):
    """A problem with the user's input (path, name, config), not a bug."""
