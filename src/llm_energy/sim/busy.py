"""Cross-process facts about simulated GPUs: the busy marker file (so another process, the power
timeline, sees a window open and at what power) and the simulated GPU list."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from llm_energy.io.files import pid_alive
from llm_energy.sim import model as simmodel

MAX_SIMULATED_GPUS = 64


class BusyMarker:
    """`<pid> [<power W> [<SM MHz>]]` in a file while a process runs work on the GPU."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text)

    def clear_if_mine(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text().split()[0] == str(os.getpid()):
                self.path.unlink()

    def read(self) -> tuple[int, float | None] | None:
        """(pid, power W if reported) of the process that marked this GPU busy."""
        try:
            fields = self.path.read_text().split()
            pid = int(fields[0])
            power = float(fields[1]) if len(fields) > 1 else None
        except (OSError, ValueError, IndexError):
            return None
        return pid, power

    def held_by_other(self) -> bool:
        marker = self.read()
        return marker is not None and marker[0] != os.getpid() and pid_alive(marker[0])


def simulated_gpus(gpu: str, count: int) -> list[tuple[int, str]]:
    """(index, UUID) of the `count` simulated GPUs of one model: distinct, stable UUIDs."""
    key = simmodel.get_gpu_model(gpu).key
    return [(i, simmodel.fake_uuid(key, i)) for i in range(count)]


def find_simulated_gpu(uuid: str) -> tuple[str, int] | None:
    """(model, index) of the simulated GPU with this UUID, None when it is not a simulated one:
    a journal names its GPU by UUID only, whatever model the run simulated."""
    for key in simmodel.GPU_MODELS:
        for i in range(MAX_SIMULATED_GPUS):
            if simmodel.fake_uuid(key, i) == uuid:
                return key, i
    return None
