"""The infer loop: load the model once, walk the sweep plan, measure each batch in a window. The
device, clock session and meter come in; this module decides what runs when and turns readings
into request records (through `llm_energy.run.plan`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from llm_energy.config.settings import Config, TaskConfig
from llm_energy.protocols import (
    MeasuredDevice,
    ProgressCallback,
    SmClockControl,
    TextGenerator,
    WindowMeter,
)
from llm_energy.run import plan, run_parts
from llm_energy.run.plan import SweepPoint
from llm_energy.run.run_parts import IdleBaseline, RunTotals
from llm_energy.run.warmup import WarmupRecord, warm_up
from llm_energy.workload.prompts import PromptError, fit_prompt

log = logging.getLogger(__name__)
_UNSET = object()  # no cap has been set yet in this run


class InferenceRun:
    def __init__(
        self,
        cfg: Config,
        *,
        generator: TextGenerator,
        meter: WindowMeter,
        clocks: SmClockControl,
        device: MeasuredDevice | None,  # None: a fake run without a device (tests)
        items_by_task: Mapping[str, Sequence[Mapping[str, Any]]],
        templates: Mapping[str, str],  # task kind -> prompt template (io.prompts reads them)
        write: Callable[[Mapping[str, Any]], None],
        run_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.cfg, self.gen, self.meter = cfg, generator, meter
        self.clocks, self.device = clocks, device
        self.items_by_task, self.write = items_by_task, write
        missing = sorted({task.kind for task in cfg.tasks} - set(templates))
        if missing:
            raise PromptError(
                f"no prompt template for task kind {missing[0]} (prompt set {cfg.model.prompt_set})"
            )
        self.templates = dict(templates)
        self.run_id = run_id or uuid.uuid4().hex
        self.sleep = sleep  # settle and cooldown waits (tests record them instead)
        self.progress = progress
        self.totals = RunTotals()
        self.idle_baselines: list[IdleBaseline] = []
        self.warmup_record: WarmupRecord | None = None
        self._last_idle: IdleBaseline | None = None  # the latest "after" reading, reusable
        self._inputs: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        self._window_id = 0

    def _fit(
        self, task: TaskConfig, item: Mapping[str, Any], input_target: int | None, max_new: int
    ) -> dict[str, Any]:
        key = (task.name, str(item["item_id"]), input_target)
        if key not in self._inputs:
            model = self.cfg.model
            # A decoder-only model's context holds prompt and output; an encoder's holds the prompt only.
            room = model.max_context_tokens - (max_new if model.family == "causal" else 0)
            fitted = fit_prompt(
                self.templates[task.kind],
                item["fields"],
                task.kind,
                count_tokens=self.gen.count_tokens,
                truncate_text=self.gen.truncate_text,
                target_tokens=input_target,
                context_limit_tokens=room,
            )
            if fitted.truncated and fitted.reason == "model context":
                self.totals.truncated_prompts += 1
                msg = "%s/%s: prompt truncated to fit the model context (%d tokens)"
                log.warning(msg, task.name, item["item_id"], fitted.tokens)
            ids = self.gen.encode(fitted.text)
            record: dict[str, Any] = {
                "input_tokens_target": input_target,
                "input_tokens": len(ids),
                "input_truncated": fitted.truncated,
                "input_truncation_reason": fitted.reason or None,
            }
            if task.kind == "generation" and item.get("references"):
                # The continuation follows the passage after a space; a chat prompt ends in a header.
                sep = "" if model.chat_template else " "
                nll, n = self.gen.reference_nll(ids, sep + item["references"][0])
                record.update(ref_nll_sum=nll, ref_tokens=n)
            self._inputs[key] = {"ids": ids, "record": record}
        return self._inputs[key]

    def prompt_ids(
        self, task: TaskConfig, item: Mapping[str, Any], input_target: int | None, max_new: int
    ) -> list[int]:
        """The token ids this run sends for `item` (fitted and cached as in a measured batch),
        so that a benchmark can replay exactly the same prompts outside the run."""
        return list(self._fit(task, item, input_target, max_new)["ids"])

    def _idle_samples_w(self) -> tuple[float, ...]:
        """One idle reading at the clocks in force, after letting the chip settle:
        `gpu.idle_samples` back-to-back sub-readings over `gpu.idle_baseline_s` (energy/meter.py)."""
        seconds = self.cfg.gpu.idle_baseline_s
        # An estimate of constant power makes "total - idle" zero by construction: not applicable.
        estimated = self.device is not None and self.device.energy_source == "codecarbon-estimate"
        if seconds <= 0 or estimated:
            return ()
        if self.cfg.gpu.idle_settle_s > 0:
            self.sleep(self.cfg.gpu.idle_settle_s)  # a chip just off load draws more than idle
        samples_w = self.meter.measure_idle_samples_w(seconds, self.cfg.gpu.idle_samples)
        return tuple(float(w) for w in samples_w)

    def _idle_before(self, applied_mhz: int | None, clock_changed: bool) -> IdleBaseline:
        last = self._last_idle
        if not clock_changed and last is not None and last.freq_applied_mhz == applied_mhz:
            # Nothing ran since the previous point's "after" reading at this same clock.
            return IdleBaseline(applied_mhz, last.after_samples_w or ())
        return IdleBaseline(applied_mhz, self._idle_samples_w())

    def _idle_after(self, before: IdleBaseline) -> IdleBaseline:
        done = dataclasses.replace(before, after_samples_w=self._idle_samples_w())
        self.idle_baselines.append(done)
        self._last_idle = done
        return done

    def _base(self, point: SweepPoint, max_new: int, mode: str, batch_fill: int) -> dict[str, Any]:
        m = self.cfg.model
        return {
            "run_id": self.run_id,
            "experiment": self.cfg.meta.experiment,
            "model": m.name,
            "model_family": m.family,
            "weights": m.weights,
            "model_params_m": m.params_m,
            "rep": point.rep,
            "engine": point.engine,
            # The configured batch size: a short last batch stays in its configuration.
            "batch_size": point.batch_size,
            "batch_fill": batch_fill,
            "input_tokens_target": point.input_tokens,
            "output_tokens_target": max_new,
            "output_mode": mode,
            "freq_requested_mhz": point.freq_mhz,
            "freq_applied_mhz": self._applied(),
            "mem_freq_requested_mhz": point.mem_freq_mhz,
            "mem_freq_applied_mhz": self._applied("applied_mem_mhz"),
            "power_limit_requested_w": point.power_limit_w,
            "power_limit_applied_w": self._applied("applied_power_limit_w"),
        }

    def _applied(self, knob: str = "applied_sm_mhz") -> Any:
        # Observe mode changes nothing: the clock seen at some instant is not an applied cap.
        return getattr(self.clocks, knob) if self.cfg.gpu.control == "lock" else None

    def _set_knobs(self, point: SweepPoint, now: dict[str, Any]) -> bool:
        """Set each knob that differs from `now` (memory first: SM clocks depend on it)."""
        changed = False
        for setter, value in (
            ("set_mem_cap", point.mem_freq_mhz),
            ("set_power_limit_w", point.power_limit_w),
            ("set_sm_cap", point.freq_mhz),
        ):
            if now.get(setter, _UNSET) != value:
                getattr(self.clocks, setter)(value)
                now[setter], changed = value, True
        if changed and self.cfg.gpu.cooldown_s:
            self.sleep(self.cfg.gpu.cooldown_s)  # let the new setting settle
        return changed

    def _warmup_call(self, key: tuple[Any, ...]) -> float:
        task_name, engine, batch_size, input_tokens, max_new, mode = key
        task = self.cfg.task(task_name)
        batch = plan.batches(self.items_by_task[task_name], batch_size)[0]
        ids = [self._fit(task, item, input_tokens, max_new)["ids"] for item in batch]
        self.gen.engine = engine
        t0 = time.perf_counter()
        self.gen.generate(ids, max_new_tokens=max_new, fixed=mode == "fixed", measure_ttft=False)
        if self.device is not None:
            self.device.synchronize()  # the latency includes work still queued on the GPU
        return time.perf_counter() - t0

    def warmup(self) -> WarmupRecord:
        """Each shape at its real length until its latencies are steady (see runtime.warmup)."""
        inf = self.cfg.infer
        try:
            record = warm_up(
                run_parts.run_shapes(self.cfg, self.items_by_task),
                self._warmup_call,
                min_calls=inf.warmup_requests,
                k=inf.warmup_steady_k,
                tolerance=inf.warmup_tolerance,
                max_s=inf.warmup_max_s,
            )
        except PromptError as exc:  # the measured loop records the failure per batch
            log.warning("warm-up skipped: %s", exc)
            record = warm_up({}, self._warmup_call, min_calls=0, k=2, tolerance=0.0, max_s=0.0)
        if record.stopped_by == "time_cap":
            msg = (
                f"warm-up hit its {inf.warmup_max_s:g} s cap before every shape was steady "
                f"(last {inf.warmup_steady_k} latencies within {inf.warmup_tolerance:.0%}); "
                "early windows may include the cold phase"
            )
            log.warning(msg)
            self.totals.warnings.append(msg)
        elif record.stopped_by == "steady":
            log.info(
                "warm-up: %d shape(s) steady after %.1f s", len(record.shapes), record.elapsed_s
            )
        self.warmup_record = record
        return record

    def run(self) -> RunTotals:
        points = plan.sweep_points(self.cfg)
        total_batches = sum(
            len(plan.batches(self.items_by_task[t.name], p.batch_size))
            for p in points
            for t in self.cfg.tasks
        )
        self.warmup()
        gpu = self.cfg.gpu  # the session entered with its memory clock and power limit set
        now = {"set_mem_cap": gpu.mem_freq, "set_power_limit_w": gpu.power_limit_w}
        done = {"points_done": 0, "batches_done": 0}

        def tell() -> None:
            if self.progress is not None:
                self.progress(**done, points_total=len(points), batches_total=total_batches)

        tell()
        with tqdm(total=total_batches, desc="infer", unit="batch", dynamic_ncols=True) as bar:
            for point in points:
                clock_changed = self._set_knobs(point, now)
                applied = self._applied()
                idle = self._idle_before(applied, clock_changed)
                self.gen.engine = point.engine
                pending: list[dict[str, Any]] = []
                try:
                    for task in self.cfg.tasks:
                        max_new, mode = plan.output_spec(task, point, self.cfg)
                        for batch in plan.batches(self.items_by_task[task.name], point.batch_size):
                            pending += self._run_batch(task, batch, point, max_new, mode, applied)
                            bar.update(1)
                            bar.set_postfix(task=task.name, mhz=applied or "default")
                            done["batches_done"] += 1
                            tell()
                except BaseException:
                    # Interrupted (signal, error): keep what was measured, with the "before"
                    # samples only (SE and df from those).
                    self._write_rows(pending, idle)
                    raise
                # Rows wait for the "after" idle reading of their point, then go to disk.
                self._write_rows(pending, self._idle_after(idle))
                done["points_done"] += 1
                tell()
        return self.totals

    def _run_batch(
        self,
        task: TaskConfig,
        batch: Sequence[Mapping[str, Any]],
        point: SweepPoint,
        max_new: int,
        mode: str,
        applied_mhz: int | None,
    ) -> list[dict[str, Any]]:
        base = self._base(point, max_new, mode, len(batch))
        started = run_parts.now_iso()
        cap_mhz = applied_mhz if applied_mhz is not None else point.freq_mhz
        try:
            inputs = [self._fit(task, item, point.input_tokens, max_new) for item in batch]
            ids = [i["ids"] for i in inputs]
            ttft = self.cfg.infer.measure_ttft
            reading, repeats, result = self._measure(ids, cap_mhz, max_new, mode == "fixed", ttft)
        except PromptError as exc:
            return self._fail(base, batch, "error", f"prompt: {exc}")
        except Exception as exc:
            import torch

            text = str(exc).lower()
            if not isinstance(exc, torch.cuda.OutOfMemoryError) and "out of memory" not in text:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            error = f"out of memory at batch size {len(batch)}: {str(exc).splitlines()[0]}"
            return self._fail(base, batch, "oom", error)
        prefill = None
        if self.cfg.infer.phases and max_new > 1:
            # The same prompts for one new token, in windows of their own: decode = the rest.
            p_reading, p_repeats, _ = self._measure(ids, cap_mhz, 1, fixed=True, ttft=False)
            prefill = run_parts.prefill_facts(p_reading, p_repeats)
        if self.cfg.gpu.control == "slurm":  # SLURM's cap labels only the windows that held it
            applied_mhz = self.clocks.freq_label_mhz(reading.cap_held)
            base["freq_applied_mhz"] = applied_mhz
        self._window_id += 1
        facts = run_parts.window_facts(
            reading, self._window_id, repeats, point.freq_mhz, applied_mhz
        )
        rows = plan.request_records(
            base=base,
            items=batch,
            inputs=[i["record"] for i in inputs],
            predictions=result.texts,
            output_tokens=result.output_tokens,
            ttft_s=result.ttft_s,
            window=facts,
            last_call_s=result.elapsed_s,
            prefill=prefill,
        )
        ended = run_parts.now_iso()
        for row in rows:
            row.update(started_at=started, ended_at=ended)
        self.totals.windows += 1
        self.totals.requests_ok += len(rows)
        if math.isfinite(reading.energy_j):  # a counter reset gives NaN: keep the total usable
            self.totals.device_energy_j += reading.energy_j
        if not reading.trusted:
            self.totals.untrusted_windows += 1
        return rows

    def _measure(
        self, ids: list[Any], cap_mhz: int | None, max_new: int, fixed: bool, ttft: bool
    ) -> tuple[Any, int, Any]:
        """(reading, repeats, last result) of generating `ids` in windows until trusted."""
        return self.meter.run_until_trusted(
            lambda: self.gen.generate(ids, max_new_tokens=max_new, fixed=fixed, measure_ttft=ttft),
            cap_mhz=cap_mhz,
            max_repeats=self.cfg.gpu.max_window_repeats,
        )

    def _write_rows(self, rows: Sequence[Mapping[str, Any]], idle: IdleBaseline) -> None:
        baseline = {k: getattr(idle, k) for k in ("power_w", "before_w", "after_w", "se_w", "df")}
        for row in rows:
            self.write(plan.with_idle_baseline(row, **baseline))

    def _fail(
        self, base: Mapping[str, Any], batch: Sequence[Mapping[str, Any]], status: str, error: str
    ) -> list[dict[str, Any]]:
        log.warning("%s: %s", status, error)
        rows = plan.failure_records(base=base, items=batch, status=status, error=error)
        for row in rows:
            row.update(started_at=run_parts.now_iso(), ended_at=run_parts.now_iso())
        self.totals.requests_failed += len(batch)
        self.totals.warnings.append(error)
        return rows
