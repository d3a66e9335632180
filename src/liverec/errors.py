"""User-facing errors: the CLI prints their message as one line and exits with code 2."""


class LiverecError(ValueError):
    """A mistake in user input (data, config, options) with an actionable message."""


class DataNotFoundError(FileNotFoundError):
    """A data set or file the user asked for is not there (and could not be downloaded)."""
