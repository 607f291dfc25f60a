"""Problems found while reading the pin list or planning the pins.

A problem never stops the planning: the entry concerned is dropped and the
vCPU floats. The adapters log each problem, and the strict policy turns
them into an error. `message` is part of the interface, because operators
grep the sidecar's log for it, so its wording only changes with a release
note.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the pin list, as logged for the operator."""

    # Stable identifier for summaries and tests, such as "cpu-not-available".
    code: str
    # The log message, such as "impossible to pin 5 on host where we have only 4".
    message: str
    # What happens instead and how to fix it.
    hint: str = ""
    # The pin-list entry concerned, exactly as written.
    entry: str | None = None
    vcpu: int | None = None
    # An advisory (such as pins spanning NUMA nodes) changes no pin, and
    # the strict policy does not reject a VM for it.
    advisory: bool = False
