"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class BenchError(Exception):
    """A problem with the user's input (flag, file, data path, impossible request)."""


class CaseFileError(BenchError):
    """A case or record file that is missing, tampered with or not in the safe format."""
