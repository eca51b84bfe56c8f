"""Errors caused by the user's data (a missing file, a corrupt download, an unknown character).

Command-line tools print these as one line and exit non-zero; they are not bugs.
"""


from infra.errors import UserError


class DataError(UserError):
    """The data cannot be used as given; the message says why and what to do."""
