"""Optional power timeline, sampled in a SEPARATE process (never a thread in the inference
process: on the H200 a Python sampling thread cost up to 20 % of GPT-2 decode throughput).
Rows `t_s,power_w,sm_clock_mhz` every `period_s` (>= 0.1 s: faster is below the power reading's
own averaging); the child exits on SIGTERM or when its parent disappears."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm_energy.device.base import Device

MIN_PERIOD_S = 0.1
CSV_HEADER = ("t_s", "power_w", "sm_clock_mhz")


def _check_period(period_s: float) -> float:
    if not period_s >= MIN_PERIOD_S:
        raise ValueError(
            f"power timeline period must be >= {MIN_PERIOD_S} s, got {period_s!r} (faster sampling perturbs inference)"
        )
    return float(period_s)


class PowerTimeline:
    """Context manager running the sampler process for one device."""

    def __init__(self, path: str | Path, device_spec: dict[str, Any], period_s: float) -> None:
        self.path = Path(path)
        self.period_s = _check_period(period_s)
        self.spec = dict(device_spec)
        self.spec.setdefault("state_dir", tempfile.gettempdir())
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_device(cls, device: Device, path: str | Path, period_s: float) -> PowerTimeline:
        return cls(path, device.open_spec(), period_s)

    def start(self, ready_timeout_s: float = 20.0) -> None:
        if self._proc is not None:
            raise RuntimeError("power timeline already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "llm_energy.energy.timeline", "--out", str(self.path)]
        cmd += ["--period-s", repr(self.period_s), "--spec", json.dumps(self.spec)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + ready_timeout_s
        while not self.path.exists():  # header written = device opened
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(
                    f"power timeline process exited early: {err.strip().splitlines()[-1:] or '?'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("power timeline process did not start in time")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> PowerTimeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sampler(out: Path, spec: dict[str, Any], period_s: float) -> int:
    from llm_energy.control.open import DeviceSpec, open_device

    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    parent = os.getppid()
    # the spec (Device.open_spec) carries every setting its own backend needs
    device = open_device(DeviceSpec.from_dict(spec))
    tmp = out.with_name(out.name + ".part")
    try:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_HEADER)
            fh.flush()
            os.replace(tmp, out)  # the parent waits for the file: appear only once opened
            next_t = time.monotonic()
            while not stop and os.getppid() == parent:
                power = device.power_w()
                clock = device.sm_clock_mhz()
                row = [f"{time.time():.3f}", f"{power:.3f}", "" if clock is None else clock]
                writer.writerow(row)
                fh.flush()
                next_t += period_s
                time.sleep(max(0.0, next_t - time.monotonic()))
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        device.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Sample device power into a CSV until SIGTERM.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--period-s", type=float, default=MIN_PERIOD_S)
    ap.add_argument("--spec", required=True, help="JSON of DeviceSpec fields (Device.open_spec)")
    args = ap.parse_args(argv)
    period = _check_period(args.period_s)
    return run_sampler(args.out, json.loads(args.spec), period)


if __name__ == "__main__":
    sys.exit(main())
