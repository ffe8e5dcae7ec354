"""A benchmark's measurement in a fresh worker process (honest start-up and peak memory), and its result.

The worker prints its result as one stdout line `RESULT {json}` (its progress goes to stderr); the
driver runs it and reads the last such line back. Standard library only: drivers import no TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
from typing import Mapping, Sequence

PREFIX = "RESULT "


def report(result: dict) -> None:
    """The worker's side: its result as the `RESULT ` line the driver reads."""
    print(PREFIX + json.dumps(result), flush=True)


def run(cmd: Sequence[str], label: str, cwd: str, env: Mapping[str, str]) -> dict:
    """The driver's side: runs `cmd` and returns the JSON of its last `RESULT ` line; a failed worker
    (its stderr already on the terminal) stops the benchmark naming `label`."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
    if proc.returncode or not lines:
        raise SystemExit(f"{label} worker failed ({proc.returncode}); its stderr is above")
    return json.loads(lines[-1][len(PREFIX):])
