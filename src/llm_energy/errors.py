"""Project-wide base for errors whose message is meant for the user (one line, no traceback)."""


class UserFacingError(RuntimeError):
    """Raised for expected failures (bad data, unavailable hardware, missing model files)."""
