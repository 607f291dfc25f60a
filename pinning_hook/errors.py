"""The exceptions that pinning-hook raises on purpose.

Each boundary translates them once: the gRPC server into a status code,
the CLI into an exit code. Any other exception is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinning_hook.problems import ProblemList


class PinningHookError(Exception):
    """Base class for the errors this package raises on purpose."""


class InvalidInput(PinningHookError, ValueError):
    """The VMI, the domain XML, the pin list or an option value is malformed.

    The message names the value and states what is expected instead. The
    server returns it to virt-launcher as INVALID_ARGUMENT.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # Log fields known where the error arose, such as the VMI's name.
        self.fields: dict[str, str] = {}


class HostCpuError(PinningHookError):
    """The host CPUs that pins may use cannot be determined."""


class StrictPolicyViolation(InvalidInput):
    """The strict policy rejects a pin list that has problems.

    The message lists the problems in the wording of the sidecar's log, so
    that virt-launcher's log and the VMI's events show why the VM did not
    start.
    """

    def __init__(self, message: str, problems: ProblemList) -> None:
        super().__init__(message)
        self.problems = problems
