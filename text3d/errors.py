"""Error types that the CLI turns into one-line messages."""


class UserError(Exception):
    """Bad input from the user (prompt, config, file, path): one line, exit code 2."""

    exit_code = 2


class TrainingError(Exception):
    """A run that had to stop (e.g. a non-finite loss): one line, exit code 1, checkpoints kept."""

    exit_code = 1


class RunDirBusy(UserError):
    """A run directory that another text3d process holds: one line naming the holder, exit code 2."""


class BackendUnavailable(UserError, RuntimeError):
    """An accelerated backend that was asked for by name (not 'auto') cannot run here: one line, exit code 2."""


class WriteFailed(TrainingError):
    """An output could not be written (disk full, read-only, no permission): one line naming the file, exit 1; the
    files written before it (checkpoints included) are kept."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason}")
        self.path = path
        self.reason = reason
