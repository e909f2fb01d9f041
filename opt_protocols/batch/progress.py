"""Progress of a running sweep and its final summary table.

On a terminal: a tqdm bar with the counts of done, failed and remaining runs and tqdm's
estimate of the time left (from the rate of this session). Elsewhere (a log file, a batch job,
a pipe): one plain line at most every ``interval`` seconds and at the end, in the same format
without the bar, never carriage-return updates.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from tqdm import tqdm

GOOD = ("optimal", "acceptable")


class Progress:
    """Counts of a sweep's runs, shown as they change.

    ``total``: all tasks; ``done``/``failed``: those already in the file when the session started.
    """

    def __init__(self, total: int, done: int = 0, failed: int = 0, *, desc: str = "sweep", enabled: bool = True,
                 stream: IO[str] | None = None, interval: float = 10.0):
        self.total, self.done, self.failed = total, done, failed
        self.initial = done + failed
        self.desc = desc
        self.stream = stream or sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.start = time.perf_counter()
        self._last_line = -float("inf")
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=self.initial, desc=desc, unit="run", file=self.stream,
                        dynamic_ncols=True, postfix=self.counts()) if tty else None
        if enabled and not tty:
            self._line(force=True)

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def counts(self) -> str:
        return f"done {self.done}, failed {self.failed}, remaining {self.remaining}"

    def update(self, ok: bool) -> None:
        """One more run is over (``ok``: optimal or acceptable)."""
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts(), refresh=False)
            self.bar.update(1)
        elif self.enabled:
            self._line(force=self.remaining == 0)

    def text(self) -> str:
        """The plain progress line: percentage, counts, elapsed, estimated time left, rate."""
        return tqdm.format_meter(self.done + self.failed, self.total, time.perf_counter() - self.start,
                                 prefix=self.desc, unit="run", initial=self.initial, postfix=self.counts(),
                                 bar_format="{l_bar}{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def _line(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last_line >= self.interval:
            print(self.text(), file=self.stream, flush=True)
            self._last_line = now

    def write(self, message: str) -> None:
        """A message that does not break the bar."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        elif self.enabled:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@dataclass
class SweepReport:
    """What a sweep session did: the file, the statuses of all runs, and this session's runs.

    ``statuses``: run_id -> status of every task of the spec that is in the file ("optimal",
    "acceptable", "failed", "error"); ``ran``: run_ids solved in this session; ``skipped``: runs
    already in the file; ``problems``: run_id -> (coords, message) of the runs that failed.
    """

    path: str
    name: str
    executor: str
    n_workers: int
    n_tasks: int
    statuses: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    skipped: int = 0
    wall_time: float = 0.0
    task_time: float = 0.0
    interrupted: bool = False
    problems: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)

    @property
    def counts(self) -> Counter:
        return Counter(self.statuses.values())

    @property
    def n_done(self) -> int:
        return sum(self.counts[s] for s in GOOD)

    @property
    def n_failed(self) -> int:
        return len(self.statuses) - self.n_done

    @property
    def n_remaining(self) -> int:
        return self.n_tasks - len(self.statuses)

    @property
    def complete(self) -> bool:
        """Every task is in the file and none failed."""
        return self.n_remaining == 0 and self.n_failed == 0

    def table(self, max_problems: int = 10) -> str:
        """The final summary: runs by status, this session's work, and the failures."""
        c = self.counts
        head = f"sweep {self.name!r} -> {self.path} ({self.executor}, {self.n_workers} workers)"
        if self.interrupted:
            head += ": INTERRUPTED"
        lines = [head, f"  {'status':12s} {'runs':>6s}"]
        for status in ("optimal", "acceptable", "failed", "error"):
            lines.append(f"  {status:12s} {c.get(status, 0):6d}")
        for status in sorted(set(c) - {"optimal", "acceptable", "failed", "error"}):
            lines.append(f"  {status:12s} {c[status]:6d}")
        lines.append(f"  {'remaining':12s} {self.n_remaining:6d}")
        lines.append(f"  {'total':12s} {self.n_tasks:6d}")
        n = len(self.ran)
        per = f", {self.task_time / n:.3g} s per run in a worker" if n else ""
        lines.append(f"this session: {n} run(s) in {self.wall_time:.1f} s{per}; {self.skipped} already in the file")
        if self.problems:
            lines.append("failed runs:")
            for rid, (coords, message) in list(self.problems.items())[:max_problems]:
                where = ", ".join(f"{k} = {v}" for k, v in coords.items())
                lines.append(f"  {rid}  {where}  {self.statuses.get(rid, '?')}: {message}")
            if len(self.problems) > max_problems:
                lines.append(f"  ... and {len(self.problems) - max_problems} more (opt-protocols show {self.path} "
                             "--where status!=optimal)")
        return "\n".join(lines)
