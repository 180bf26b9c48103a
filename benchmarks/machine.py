"""Whether the machine was quiet while a benchmark ran: the CPU time that processes other than
the benchmark's own took, over the run. (The load average said it badly: it still holds a
previous run's own load for minutes after that run has ended.)"""
from __future__ import annotations

import os
import time

QUIET = 0.05
"""Other processes taking at most this share of the machine's CPU time: a quiet run."""


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and I/O
    wait; steal included, the time a hypervisor gave this machine's CPUs to other guests)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process tree: this process, the children it has waited for, and the
    descendants still running (a compile worker pool, a server) with those they waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system + sum(
        sum(fields[10:14]) for fields in _live_descendants()) / os.sysconf("SC_CLK_TCK")


def _live_descendants() -> list[list[int]]:
    """/proc/PID/stat's numeric fields from the 4th of every live descendant: ppid first, utime, stime,
    cutime and cstime at 10 to 13."""
    stats = {}
    for path in os.scandir("/proc"):
        try:
            with open(f"/proc/{path.name}/stat") as fh:
                stats[int(path.name)] = list(map(int, fh.read().rsplit(")", 1)[1].split()[1:]))
        except (ValueError, OSError):  # not a process, or it ended meanwhile
            continue
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(fields[0], []).append(pid)
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found.append(stats[pid])
        todo += children.get(pid, [])
    return found


class OtherLoad:
    """Measures from its creation; read it once the benchmark's child processes have ended."""

    def __init__(self):
        self.busy, self.own, self.start = _busy_seconds(), _own_seconds(), time.monotonic()

    def share(self) -> float:
        others = (_busy_seconds() - self.busy) - (_own_seconds() - self.own)
        return max(0.0, others) / ((time.monotonic() - self.start) * (os.cpu_count() or 1))

    def line(self) -> str:
        share = self.share()
        verdict = "quiet" if share <= QUIET else "NOT quiet: other jobs ran"
        return f"other processes took {share:.1%} of the machine's CPU time during this run ({verdict})"
