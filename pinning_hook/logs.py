"""Log output in KubeVirt's style: one JSON object per line, or text for people.

Every record carries `component`, `level`, `msg`, `pos` and `timestamp`, the
keys KubeVirt's own components write. Context such as the VMI's namespace,
name and uid and the hook point goes in through `extra={"fields": {...}}`
and becomes top-level keys.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from pinning_hook.problems import Problem, ProblemList

COMPONENT = "pinning-hook"
LOG_FORMATS = ("json", "text")

# Per kind of problem, how many are logged one by one in a single call
# before the rest are only counted.
PROBLEMS_LOGGED_PER_CODE = 5

# A field value longer than this is cut, so that a huge pin-list entry
# cannot turn into a huge log line.
MAX_FIELD_LENGTH = 200

_RESERVED_KEYS = {"component", "level", "msg", "pos", "timestamp"}


def shorten(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... ({len(text)} characters)"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None) or {}
    result: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            value = shorten(value, MAX_FIELD_LENGTH)
        result[key if key not in _RESERVED_KEYS else f"field_{key}"] = value
    return result


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "component": COMPONENT,
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "pos": f"{record.module}.py:{record.lineno}",
            "timestamp": _timestamp(record),
        }
        document.update(_fields(record))
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The same content as JsonFormatter, as `time level [namespace/name] msg key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        namespace = fields.pop("namespace", "")
        name = fields.pop("name", "")
        subject = f" {namespace}/{name}:" if name else ""
        details = " ".join(
            f"{key}={json.dumps(value, ensure_ascii=False, default=str)}" for key, value in fields.items()
        )
        line = f"{_timestamp(record)} {record.levelname.lower():<7}{subject} {record.getMessage()}"
        if details:
            line += f"  [{details}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(log_format: str = "json", *, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send this package's log records to `stream` (stderr) in `log_format`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())

    logger = logging.getLogger("pinning_hook")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def log_problems(logger: logging.Logger, problems: Iterable[Problem], fields: Mapping[str, Any]) -> None:
    """Log each problem as a warning, then count those beyond the first few of each kind."""
    found = problems if isinstance(problems, ProblemList) else ProblemList(problems)
    logged: Counter[str] = Counter()
    examples: dict[str, str] = {}

    for problem in found:
        if logged[problem.code] >= PROBLEMS_LOGGED_PER_CODE:
            examples.setdefault(problem.code, problem.message)
            continue
        logged[problem.code] += 1
        logger.warning(
            problem.message,
            extra={"fields": {**fields, "problem": problem.code, "entry": problem.entry, "hint": problem.hint}},
        )

    for code in found.codes():
        suppressed = found.count(code) - logged[code]
        if suppressed > 0:
            logger.warning(
                "%d more problems of this kind were not logged one by one, such as: %s",
                suppressed,
                examples[code],
                extra={"fields": {**fields, "problem": code, "suppressed": suppressed}},
            )
