"""The machine a benchmark ran on, as its report states it beside the figures: CPU model, cores, load.

Standard library only (drivers that import no TensorFlow read it).
"""

from __future__ import annotations

import os
import subprocess
from typing import List


def cpu_model(fallback: str = "unknown") -> str:
    """The CPU's model name: lscpu's "Model name", else /proc/cpuinfo's "model name", else `fallback`."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return fallback


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load_average() -> List[float]:
    """The 1-, 5- and 15-minute load averages now, to 2 decimals: on shared cores, context for a figure."""
    return [round(x, 2) for x in os.getloadavg()]
