"""The one exception type the project raises for mistakes a user can fix."""


class CaptchaStreamError(Exception):
    """A problem with the user's input: config, files, checkpoints or arguments.

    The message is a single line that names the culprit (a file, a key or a value);
    the command-line entry points print it without a traceback.
    """

    # The command's exit status: 2, the usage-error convention; a run stopped by a signal ends with 128 + its number.
    exit_code = 2
