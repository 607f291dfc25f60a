"""The exceptions that pinning-hook raises on purpose.

Each boundary translates them once: the gRPC server into a status code,
the CLI into an exit code. Any other exception is a bug.
"""


class PinningHookError(Exception):
    """Base class for the errors this package raises on purpose."""


class InvalidInput(PinningHookError, ValueError):
    """The VMI, the domain XML, the pin list or an option value is malformed.

    The message names the value and says what is expected instead. The
    server returns it to virt-launcher as INVALID_ARGUMENT.
    """


class HostCpuError(PinningHookError):
    """The host CPUs that pins may use cannot be determined."""
