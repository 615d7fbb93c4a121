"""The error every reader of input files raises."""


class DataError(ValueError):
    """An input file is missing, malformed, or contradicts another."""
