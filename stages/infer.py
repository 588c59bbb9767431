"""Stage `infer`: run every request under the configured clocks and record one row per request.

Order matters for safety: validate params, open the device and its clock session (which restores
any state a killed run left behind and refuses impossible caps) before anything is written.
"""

from __future__ import annotations

from _common import StageError, log, run_stage

import contextlib
import os
import socket

from llm_energy import api
from llm_energy.config.feasibility import knob_range_problem
from llm_energy.config.settings import Config
from llm_energy.control.open import DeviceSpec, open_device
from llm_energy.energy.emissions import EmissionsMeter
from llm_energy.energy.timeline import PowerTimeline
from llm_energy.errors import InputFileError, one_line
from llm_energy.io.files import JsonlAppender, read_jsonl, staged_dir, write_json
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import ProjectPaths, gpu_lock_dir, progress_dir, progress_file
from llm_energy.run.engine import load_generator
from llm_energy.run.plan import needs_resolving, resolve_clocks
from llm_energy.run.progress import ProgressTracker
from llm_energy.run.provenance import run_provenance
from llm_energy.run.runner import InferenceRun

PREPARED_KEYS = ("task", "kind", "item_id", "fields")  # docs/records.md; the rest is optional
REPREPARE = "re-run the prepare stage (dvc repro prepare, or python stages/prepare.py)"


def _read_items(cfg: Config, paths: ProjectPaths) -> dict[str, list[dict]]:
    """Every task's prepared items, checked before the device is touched or anything written."""
    items = {}
    for task in cfg.tasks:
        path = paths.prepared_dir / f"{task.name}.jsonl"
        if not path.exists():
            raise StageError(f"{path} not found: run the prepare stage first (task list changed?)")
        rows = read_jsonl(path, remedy=REPREPARE, required=PREPARED_KEYS)
        for line, row in enumerate(rows, 1):
            problem = (
                f"kind is {row['kind']!r} but task {task.name} is {task.kind}"
                if row["kind"] != task.kind
                else "fields is not a JSON object"
                if not isinstance(row["fields"], dict)
                else None
            )
            if problem:
                raise InputFileError(path, problem, REPREPARE, line=line)
        items[task.name] = rows[: cfg.infer.max_items]
    return items


def _progress_tracker(cfg: Config, paths: ProjectPaths) -> ProgressTracker:
    """This unit's progress for `llm-energy grid status` (named as DVC named the experiment)."""
    unit = os.environ.get("DVC_EXP_NAME") or cfg.meta.experiment
    target = progress_file(progress_dir(paths.gpu_state_dir(cfg.gpu.state_dir)), unit)

    def write(record: dict) -> None:
        try:
            write_json(target, record)
        except OSError as exc:  # progress is a convenience: it never fails a measurement
            log.warning("progress not written to %s: %s", target, exc)

    return ProgressTracker(unit, host=socket.gethostname(), pid=os.getpid(), write=write)


def main(cfg: Config, paths: ProjectPaths) -> None:
    progress = _progress_tracker(cfg, paths)
    try:
        _measure(cfg, paths, progress)
    except BaseException as exc:  # signals too: a crash reads `failed`, a kill -9 `lost`
        progress.finish("failed", one_line(str(exc) or type(exc).__name__))
        raise
    progress.finish("done")


def _measure(cfg: Config, paths: ProjectPaths, progress: ProgressTracker) -> None:
    gpu = cfg.gpu
    items = _read_items(cfg, paths)
    templates = read_prompt_templates(cfg, paths)
    state_dir = paths.gpu_state_dir(gpu.state_dir)
    # One GPU per run: the device holds its GPU's lock (gpu.index=auto: the first free one)
    # until the run ends; the clock session below shares it.
    spec = DeviceSpec.from_config(
        gpu,
        seed=cfg.meta.seed,
        country_iso_code=cfg.emissions.country_iso_code,
        state_dir=state_dir,
        exclusive=True,
        # model.device_map: the model spans several GPUs, measured and capped as one group
        indices="all" if cfg.model.device_map == "auto" else cfg.model.device_map,
        lock_dir=gpu_lock_dir(state_dir),
    )
    device = open_device(spec)
    try:
        if needs_resolving(cfg):  # fractions, "50%", auto:N and MHz, on this device's clocks
            cfg = resolve_clocks(cfg, device.supported_sm_clocks_mhz())
        problem = knob_range_problem(  # power limits and memory clocks, as validate checks them
            cfg,
            power_range_w=device.power_limit_range_w(),
            mem_clocks_mhz=device.supported_mem_clocks_mhz(),
        )
        if problem:
            raise StageError(problem)
    except BaseException:
        device.close()
        raise
    gpu = cfg.gpu
    caps = cfg.sweep.freqs_mhz or (gpu.freq,)
    settings = vars(gpu)  # the API's contexts, on this run's device and settings
    with (
        device,
        api.locked_clocks(
            sm_mhz=caps[0],
            mem_mhz=gpu.mem_freq,
            power_limit_w=gpu.power_limit_w,
            device=device,
            control=gpu.control,
            planned_sm_mhz=[f for f in caps if f is not None],
            state_dir=state_dir,
            settings=settings,
        ) as clocks,
        # Outputs go to a temp folder swapped in at the end: a failed run keeps the previous
        # data/infer (the plain-script path has no DVC cache to recover it from).
        staged_dir(paths.infer_dir, keep_failed=paths.infer_partial_dir) as out_dir,
    ):
        meter = api.energy_meter(device, settings)
        period_s = meter.measure_update_period_s()
        progress.set_gpu(device.uuid(), device.name())
        gen = load_generator(
            cfg.model,
            paths.model_dir,
            backend=device.backend,
            seed=cfg.meta.seed,
            engine=cfg.infer.engine,
            allow_compile=cfg.infer.compile,
            gpu_uuid=device.uuid(),  # torch runs on the GPU NVML measures, matched by UUID
            gpu_uuids=[m.uuid() for m in device.member_devices()],
            sim_device=device,  # simulated GPU: each call's workload drives its model clock
        )
        emissions = EmissionsMeter(
            cfg.emissions.country_iso_code, cfg.emissions.region, cfg.emissions.enabled
        )
        # Sampled by a separate process, never a thread in this one (a thread slows generate).
        timeline = (
            PowerTimeline.for_device(
                device, out_dir / "power_timeline.csv", gpu.power_timeline_period_s
            )
            if gpu.power_timeline_period_s
            else contextlib.nullcontext()
        )
        # Records go to disk one by one: an interrupted run keeps everything measured so far.
        # codecarbon's tracker is stopped on the way out even when the run raises.
        with emissions, JsonlAppender(out_dir / paths.requests_file.name) as out, timeline:
            run = InferenceRun(
                cfg,
                generator=gen,
                meter=meter,
                clocks=clocks,
                device=device,
                items_by_task=items,
                templates=templates,
                write=out.write,
                progress=progress,
            )
            totals = run.run()
            emissions.set_device_energy(totals.device_energy_j, device.energy_source)
        write_json(
            out_dir / paths.run_file.name,
            {
                **run_provenance(cfg, device=device, root=paths.root),
                "run_id": run.run_id,
                "torch_device": gen.device,
                # params hold only model.prompt_set: the texts sent are recorded here.
                "prompt_templates": dict(templates),
                "control": gpu.control,
                "clock_mechanism": clocks.clock_mechanism,
                # n/a (null) without an energy counter: an estimate has no ticks to align to
                "counter_update_period_s": period_s if meter.ticks else None,
                "window_rules": {
                    "min_window_s": gpu.min_window_s if meter.ticks else None,
                    "min_window_periods": gpu.min_window_periods if meter.ticks else None,
                    "min_trusted_s": meter.min_trusted_s if meter.ticks else None,
                    "tick_align": gpu.tick_align if meter.ticks else None,
                    "cooldown_s": gpu.cooldown_s,
                    "idle_settle_s": gpu.idle_settle_s,
                    "idle_baseline_s": gpu.idle_baseline_s,
                    "idle_samples": gpu.idle_samples,
                },
                "warmup": run.warmup_record.to_dict() if run.warmup_record else None,
                "idle_baselines": [b.to_dict() for b in run.idle_baselines],
                "totals": totals.__dict__,
                "emissions": emissions.report.to_dict(),
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
