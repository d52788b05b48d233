"""The error every layer raises for bad user input (missing file, wrong argument, undecodable image).

Why at the bottom: the runtime (images.py) raises it and cli/common.friendly_main turns it into one
`error: ...` line and exit status 2; defining it in the CLI layer would make the runtime import upward.
"""


class UserError(Exception):
    """Bad input from the user (missing file, wrong argument); message is shown as-is."""
