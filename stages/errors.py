"""Errors shared by the stages."""


class DataError(ValueError):
    """An input file is missing, malformed, or contradicts another."""
