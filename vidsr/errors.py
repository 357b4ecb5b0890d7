"""Errors meant for the user: the CLI prints their message as one line and exits non-zero."""


class VidsrError(Exception):
    """A failure the user can act on; its message is the whole story (no traceback)."""

    exit_code = 1


class InputError(VidsrError):
    """The input is missing, not a video, or cannot be decoded."""

    exit_code = 2


class ConfigError(VidsrError):
    """A bad option value (flag, preset key or keyword argument); the message names the option."""

    exit_code = 2

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


class OutputError(VidsrError):
    """The output cannot be written (exists, unwritable folder, disk full, unsupported
    combination).
    """

    exit_code = 3


class WeightsError(VidsrError):
    """No usable weights for the requested model."""

    exit_code = 4


class Cancelled(VidsrError):
    """The job was asked to stop (SIGINT/SIGTERM, or a watcher shutting down)."""

    exit_code = 130
