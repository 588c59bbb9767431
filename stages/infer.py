"""Stage `infer`: run every request under the configured clocks and record one row per request.

Order matters for safety: validate params, open the device and its clock session (which restores
any state a killed run left behind and refuses impossible caps) before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from _common import StageError, log, run_stage
from llm_energy.config import Config
from llm_energy.hw import ClockSession, EnergyMeter, PowerTimeline, open_device
from llm_energy.io.files import JsonlAppender, read_jsonl, write_json
from llm_energy.paths import ProjectPaths
from llm_energy.runtime.emissions import EmissionsTracker
from llm_energy.runtime.engine import load_generator
from llm_energy.runtime.provenance import run_provenance
from llm_energy.runtime.runner import InferenceRun


def _read_items(cfg: Config, paths: ProjectPaths) -> dict[str, list[dict]]:
    items = {}
    for task in cfg.tasks:
        path = paths.prepared_dir / f"{task.name}.jsonl"
        if not path.exists():
            raise StageError(f"{path} not found: run the prepare stage first (task list changed?)")
        items[task.name] = read_jsonl(path)[: cfg.infer.max_items]
    return items


def main(cfg: Config, paths: ProjectPaths) -> None:
    gpu = cfg.gpu
    device = open_device(
        gpu.backend,
        gpu.index,
        state_dir=paths.state_dir,
        simulated_gpu=gpu.simulated_gpu,
        simulated_alpha=gpu.simulated_alpha,
        simulated_utilization=gpu.simulated_utilization,
        seed=cfg.meta.seed,
        country_iso_code=cfg.emissions.country_iso_code,
    )
    first_cap = (cfg.sweep.freqs_mhz or (gpu.freq,))[0]
    with (
        device,
        ClockSession(
            device,
            control=gpu.control,
            sm_freq_mhz=first_cap,
            mem_freq_mhz=gpu.mem_freq,
            journal_dir=paths.state_dir / "journal",
            on_other_processes=gpu.on_other_processes,
            planned_sm_freqs_mhz=[f for f in (cfg.sweep.freqs_mhz or (gpu.freq,)) if f is not None],
        ) as clocks,
    ):
        items = _read_items(cfg, paths)
        meter = EnergyMeter(device, min_window_periods=gpu.min_window_periods)
        period_s = meter.measure_update_period_s()
        gen = load_generator(
            cfg.model,
            paths.model_dir,
            backend=device.backend,
            seed=cfg.meta.seed,
            engine=cfg.infer.engine,
            allow_compile=cfg.infer.compile,
        )
        shutil.rmtree(paths.infer_dir, ignore_errors=True)
        emissions = EmissionsTracker(
            cfg.emissions.country_iso_code, cfg.emissions.region, cfg.emissions.enabled
        )
        emissions.start()
        # Sampled by a separate process, never a thread in this one (a thread slows generate).
        timeline = (
            PowerTimeline.for_device(
                device, paths.infer_dir / "power_timeline.csv", gpu.power_timeline_period_s
            )
            if gpu.power_timeline_period_s
            else contextlib.nullcontext()
        )
        # Records go to disk one by one: an interrupted run keeps everything measured so far.
        with JsonlAppender(paths.requests_file) as out, timeline:
            run = InferenceRun(
                cfg,
                generator=gen,
                meter=meter,
                clocks=clocks,
                device=device,
                items_by_task=items,
                write=out.write,
            )
            totals = run.run()
        report = emissions.stop(
            device_energy_j=totals.device_energy_j, device_energy_source=device.energy_source
        )
        write_json(
            paths.run_file,
            {
                **run_provenance(cfg, device=device, root=paths.root),
                "run_id": run.run_id,
                "torch_device": gen.device,
                "control": gpu.control,
                "counter_update_period_s": period_s,
                "idle_power_w_by_freq": {str(k): v for k, v in run.idle_power_w.items()},
                "totals": totals.__dict__,
                "emissions": report.to_dict(),
                "clock_warnings": list(getattr(clocks, "warnings", [])),
            },
        )
    log.info(
        "%d requests in %d windows (%d untrusted, %d failed), %.1f J (%s)",
        totals.requests_ok,
        totals.windows,
        totals.untrusted_windows,
        totals.requests_failed,
        totals.device_energy_j,
        device.energy_source,
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_stage("infer", main)
