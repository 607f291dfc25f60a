"""Problems found while reading the pin list or planning the pins.

A problem never stops the planning: the entry concerned is dropped and the
vCPU floats. The adapters log each problem, and the strict policy turns
them into an error. `message` is part of the interface, because operators
grep the sidecar's log for it, so its wording only changes with a release
note.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator


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


# How many problems of one kind a ProblemList keeps in full. The log shows
# fewer of them one by one, and the strict policy's message fits about 50.
KEPT_PER_CODE = 20


class ProblemList:
    """Problems in the order found: the first KEPT_PER_CODE of each kind in
    full, the rest only counted.

    A pin list of 100,000 bad entries would otherwise hold 100,000 messages
    in memory, and the sidecar may be capped at 64M.
    """

    __slots__ = ("_retained", "_counts", "_advisory_codes")

    def __init__(self, problems: Iterable[Problem] = ()) -> None:
        self._retained: list[Problem] = []
        self._counts: Counter[str] = Counter()
        self._advisory_codes: set[str] = set()
        self.extend(problems)

    def append(self, problem: Problem) -> None:
        self._counts[problem.code] += 1
        if problem.advisory:
            self._advisory_codes.add(problem.code)
        if self._counts[problem.code] <= KEPT_PER_CODE:
            self._retained.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        """Add problems; from another ProblemList, its counted problems count here too."""
        if not isinstance(problems, ProblemList):
            for problem in problems:
                self.append(problem)
            return

        self._advisory_codes |= problems._advisory_codes
        for problem in problems._retained:
            kept_here = sum(1 for mine in self._retained if mine.code == problem.code)
            if kept_here < KEPT_PER_CODE:
                self._retained.append(problem)
        self._counts.update(problems._counts)

    def __iter__(self) -> Iterator[Problem]:
        """Iterate over the problems kept in full."""
        return iter(self._retained)

    def __len__(self) -> int:
        """Return the number of problems found, counted ones included."""
        return sum(self._counts.values())

    def __getitem__(self, index: int) -> Problem:
        return self._retained[index]

    def count(self, code: str) -> int:
        """Return how many problems of this kind were found."""
        return self._counts[code]

    def codes(self) -> list[str]:
        """Return the kinds of problem found, in the order first found."""
        return list(self._counts)

    def rejections(self) -> ProblemList:
        """Return the problems that are not advisories, with their counts."""
        result = ProblemList()
        result._retained = [problem for problem in self._retained if not problem.advisory]
        result._counts = Counter(
            {code: count for code, count in self._counts.items() if code not in self._advisory_codes}
        )
        return result
