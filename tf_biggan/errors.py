"""The one exception type the app shows to a person without a traceback.

Anything a user can fix (a bad flag, a missing file, an inconsistent configuration) raises a
`UserError` whose message names the file or flag and the fix; `tf_biggan.main` prints it and
exits with status 2. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, worded for the user."""
