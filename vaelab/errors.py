"""Errors a user sees. Each message names the problem and the fix."""


class VaelabError(Exception):
    """A problem the user can fix; the CLI prints the message and exits with status 2.

    Examples:
        >>> try:
        >>>     vaelab.train("mlp", "mnist-sample", epochs=0)
        >>> except vaelab.VaelabError as e:
        >>>     print(e)  # --epochs must be at least 1, got 0
    """


class DataFormatError(VaelabError):
    """A data file that is missing, truncated, corrupt or not in the expected format."""


class CheckpointError(VaelabError):
    """A weights or checkpoint file that does not belong to the model or run it is loaded into."""
