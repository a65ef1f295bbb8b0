"""The errors a user can cause and fix: a bad option or environment variable, a damaged file, a run
that diverged.

`UserError` is the one type for them. The command line prints one as a single line and exits with
status 1 (a traceback only with --debug or HYBRIDREF_DEBUG=1); any other exception is a bug in
hybridref and keeps its traceback. It is a dedicated type rather than "any ValueError", because a
ValueError also comes out of NumPy and out of our own argument checks of internal calls, and those
are bugs a one-line message would hide. It derives from ValueError so that callers catching
ValueError, as they did before it existed, still catch it.

Every message says what was wrong and how to fix it.
"""


class UserError(ValueError):
    """Bad input from the user (an option, an environment variable, a file), or a run that cannot go
    on; the message names what was wrong and how to fix it."""


class CheckpointError(UserError):
    """A file that is not a readable hybridref checkpoint, or one that does not fit the model."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss or the gradient norm is no longer finite: training cannot continue. (A
    FloatingPointError too, the type AdamW raised for it before.)"""
