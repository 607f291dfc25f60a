"""The benchmark's Markdown report: the machine, the budgets and every figure over the runs."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import pathlib
import platform
import statistics
from collections.abc import Sequence

BEGIN_MARKER = "<!-- bench:begin (written by bench/bench.py; edits between the markers are lost) -->"
END_MARKER = "<!-- bench:end -->"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One measured figure: its key in a run's results, its label, unit and decimal places."""

    key: str
    label: str
    unit: str
    digits: int


@dataclasses.dataclass(frozen=True)
class Budget:
    """A limit on one figure, and the value to aim for."""

    key: str
    label: str
    limit: float
    aim: float | None
    unit: str
    # True when larger values are better, as for the speed-up.
    higher_is_better: bool = False

    def meets(self, value: float, bound: float | None) -> bool:
        if bound is None:
            return True
        return value >= bound if self.higher_is_better else value <= bound

    def judge(self, value: float) -> str:
        """Say whether `value` meets the budget and the aim, and by how much it misses."""
        if not self.meets(value, self.limit):
            gap = abs(value - self.limit)
            return f"**missed** by {gap:.2f} {self.unit} ({gap / self.limit:.0%})"
        if self.aim is None:
            return "met"
        if self.meets(value, self.aim):
            return "met, aim met"
        return f"met; aim missed by {abs(value - self.aim):.2f} {self.unit}"


def describe_machine() -> list[tuple[str, str]]:
    """Name the CPU, cores, memory, kernel, Python and the packages that shape the figures."""
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = pathlib.Path("/proc/meminfo").read_text()
    total_kib = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:"))
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("grpcio", "lxml", "protobuf"))
    return [
        ("CPU", model or platform.processor() or "unknown"),
        ("cores", f"{os.cpu_count()} online, {len(os.sched_getaffinity(0))} usable by the benchmark"),
        ("memory", f"{total_kib / 1024 / 1024:.1f} GiB"),
        ("kernel", f"Linux {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("packages", versions),
    ]


def render(
    runs: Sequence[dict[str, float]],
    *,
    figures: Sequence[Figure],
    budgets: Sequence[Budget],
    summary: str,
    load_before: Sequence[float],
    load_after: Sequence[float],
) -> str:
    """Render the results as the Markdown block between the two markers."""

    def spread(key: str) -> tuple[float, float, float]:
        values = [run[key] for run in runs]
        return min(values), statistics.median(values), max(values)

    def number(value: float, digits: int) -> str:
        return f"{value:,.{digits}f}"

    digits = {figure.key: figure.digits for figure in figures}
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = f"{' '.join(f'{value:.2f}' for value in load_before)} before, "
    load += f"{' '.join(f'{value:.2f}' for value in load_after)} after"
    lines = [
        BEGIN_MARKER,
        "",
        f"Measured {today}. {summary}",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in describe_machine()),
        f"| load average (1, 5, 15 min) | {load} |",
        "",
        "### Budgets",
        "",
        "Judged on the median over the runs.",
        "",
        "| figure | budget | aim | min | median | max | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget in budgets:
        low, middle, high = spread(budget.key)
        places = digits[budget.key]
        sign = "≥" if budget.higher_is_better else "≤"
        aim = f"{sign} {budget.aim:g} {budget.unit}" if budget.aim is not None else ""
        lines.append(
            f"| {budget.label} | {sign} {budget.limit:g} {budget.unit} | {aim} | {number(low, places)} | "
            f"{number(middle, places)} | {number(high, places)} | {budget.judge(middle)} |"
        )
    lines += [
        "",
        "### All figures",
        "",
        "| figure | unit | min | median | max |",
        "|---|---|---|---|---|",
    ]
    for figure in figures:
        values = " | ".join(number(value, figure.digits) for value in spread(figure.key))
        lines.append(f"| {figure.label} | {figure.unit} | {values} |")
    lines += ["", END_MARKER]
    return "\n".join(lines) + "\n"


def write_results(path: pathlib.Path, block: str) -> None:
    """Replace the marked block in `path`, or create the file with the block alone."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Benchmarks\n\n{block}")
        return
    text = path.read_text()
    if BEGIN_MARKER not in text or END_MARKER not in text:
        raise RuntimeError(f"{path} lacks the marker lines; add {BEGIN_MARKER!r} and {END_MARKER!r}")
    before = text[: text.index(BEGIN_MARKER)]
    after = text[text.index(END_MARKER) + len(END_MARKER) :].lstrip("\n")
    path.write_text(before + block + ("\n" + after if after else ""))
