"""The infer loop: load the model once, walk the sweep plan, measure each batch in a window.

The device, the clock session and the meter come from `llm_energy.hw`; this module only decides
what runs when and turns readings into request records (through `llm_energy.plan`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from llm_energy.config import Config, TaskConfig
from llm_energy.plan import (
    SweepPoint,
    WindowFacts,
    batches,
    failure_records,
    output_spec,
    request_records,
    sweep_points,
)
from llm_energy.prompts import PromptError, fit_prompt

log = logging.getLogger(__name__)
_UNSET = object()  # no cap has been set yet in this run


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class RunTotals:
    windows: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    untrusted_windows: int = 0
    device_energy_j: float = 0.0
    truncated_prompts: int = 0
    warnings: list[str] = field(default_factory=list)


class InferenceRun:
    def __init__(
        self,
        cfg: Config,
        *,
        generator: Any,
        meter: Any,
        clocks: Any,
        device: Any,
        items_by_task: Mapping[str, Sequence[Mapping[str, Any]]],
        write: Callable[[Mapping[str, Any]], None],
        run_id: str | None = None,
    ) -> None:
        self.cfg, self.gen, self.meter, self.clocks, self.device = (
            cfg,
            generator,
            meter,
            clocks,
            device,
        )
        self.items_by_task, self.write = items_by_task, write
        self.run_id = run_id or uuid.uuid4().hex
        self.totals = RunTotals()
        self.idle_power_w: dict[int | None, float | None] = {}
        self._inputs: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        self._window_id = 0

    # ------------------------------------------------------------ prompts
    def _fit(
        self, task: TaskConfig, item: Mapping[str, Any], input_target: int | None, max_new: int
    ) -> dict[str, Any]:
        key = (task.name, str(item["item_id"]), input_target)
        if key not in self._inputs:
            # A decoder-only model's context holds prompt and output; an encoder's holds the prompt only.
            room = self.cfg.model.max_context_tokens - (
                max_new if self.cfg.model.family == "causal" else 0
            )
            fitted = fit_prompt(
                self.cfg.model.prompt_for(task.kind),
                item["fields"],
                task.kind,
                count_tokens=self.gen.count_tokens,
                truncate_text=self.gen.truncate_text,
                target_tokens=input_target,
                context_limit_tokens=room,
            )
            if fitted.truncated and fitted.reason == "model context":
                self.totals.truncated_prompts += 1
                log.warning(
                    "%s/%s: prompt truncated to fit the model context (%d tokens)",
                    task.name,
                    item["item_id"],
                    fitted.tokens,
                )
            ids = self.gen.encode(fitted.text)
            entry: dict[str, Any] = {
                "ids": ids,
                "record": {
                    "input_tokens_target": input_target,
                    "input_tokens": len(ids),
                    "input_truncated": fitted.truncated,
                    "input_truncation_reason": fitted.reason or None,
                },
            }
            if task.kind == "generation" and item.get("references"):
                # The continuation follows the passage after a space; a chat prompt ends in a header.
                sep = "" if self.cfg.model.chat_template else " "
                nll, n = self.gen.reference_nll(ids, sep + item["references"][0])
                entry["record"].update(ref_nll_sum=nll, ref_tokens=n)
            self._inputs[key] = entry
        return self._inputs[key]

    # ------------------------------------------------------------ measurement
    def _idle(self, applied_mhz: int | None) -> float | None:
        if applied_mhz not in self.idle_power_w:
            seconds = self.cfg.gpu.idle_baseline_s
            # An estimate of constant power makes "total - idle" zero by construction: not applicable.
            estimated = getattr(self.device, "energy_source", None) == "codecarbon-estimate"
            self.idle_power_w[applied_mhz] = (
                self.meter.measure_idle_power_w(seconds) if seconds > 0 and not estimated else None
            )
        return self.idle_power_w[applied_mhz]

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
        }

    def _applied(self) -> int | None:
        # Observe mode changes nothing: the clock seen at some instant is not an applied cap.
        return self.clocks.applied_sm_mhz if self.cfg.gpu.control == "lock" else None

    def warmup(self) -> None:
        n = self.cfg.infer.warmup_requests
        first = next((items[0] for items in self.items_by_task.values() if items), None)
        if n == 0 or first is None:
            return
        task = self.cfg.task(str(first["task"]))
        ids = self._fit(task, first, self.cfg.infer.input_tokens, 8)["ids"]
        for engine in sorted(set(self.cfg.sweep.engines or (self.cfg.infer.engine,))):
            self.gen.engine = engine
            for _ in range(n):
                self.gen.generate([ids], max_new_tokens=8, fixed=True, measure_ttft=False)

    def run(self) -> RunTotals:
        points = sweep_points(self.cfg)
        total_batches = sum(
            len(batches(self.items_by_task[t.name], p.batch_size))
            for p in points
            for t in self.cfg.tasks
        )
        self.warmup()
        current_cap: object = _UNSET
        with tqdm(total=total_batches, desc="infer", unit="batch", dynamic_ncols=True) as bar:
            for point in points:
                if point.freq_mhz != current_cap:
                    if self.cfg.gpu.cooldown_s and current_cap is not _UNSET:
                        time.sleep(self.cfg.gpu.cooldown_s)
                    self.clocks.set_sm_cap(point.freq_mhz)
                    current_cap = point.freq_mhz
                applied = self._applied()
                idle_w = self._idle(applied)
                self.gen.engine = point.engine
                for task in self.cfg.tasks:
                    max_new, mode = output_spec(task, point, self.cfg)
                    for batch in batches(self.items_by_task[task.name], point.batch_size):
                        self._run_batch(task, batch, point, max_new, mode, applied, idle_w)
                        bar.update(1)
                        bar.set_postfix(task=task.name, mhz=applied or "default")
        return self.totals

    def _run_batch(
        self,
        task: TaskConfig,
        batch: Sequence[Mapping[str, Any]],
        point: SweepPoint,
        max_new: int,
        mode: str,
        applied_mhz: int | None,
        idle_w: float | None,
    ) -> None:
        base = self._base(point, max_new, mode, len(batch))
        started = _now_iso()
        try:
            inputs = [self._fit(task, item, point.input_tokens, max_new) for item in batch]
            fixed = mode == "fixed"
            reading, repeats, result = self.meter.run_until_trusted(
                lambda: self.gen.generate(
                    [i["ids"] for i in inputs],
                    max_new_tokens=max_new,
                    fixed=fixed,
                    measure_ttft=self.cfg.infer.measure_ttft,
                ),
                cap_mhz=applied_mhz if applied_mhz is not None else point.freq_mhz,
                max_repeats=self.cfg.gpu.max_window_repeats,
            )
        except PromptError as exc:
            self._fail(base, batch, "error", f"prompt: {exc}")
            return
        except Exception as exc:
            if not _is_oom(exc):
                raise
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._fail(
                base,
                batch,
                "oom",
                f"out of memory at batch size {len(batch)}: {str(exc).splitlines()[0]}",
            )
            return
        self._window_id += 1
        facts = WindowFacts(
            window_id=self._window_id,
            window_energy_j=reading.energy_j,
            window_s=reading.elapsed_s,
            window_repeats=repeats,
            window_trusted=reading.trusted,
            energy_source=reading.energy_source,
            idle_power_w=idle_w,
            freq_requested_mhz=point.freq_mhz,
            freq_applied_mhz=applied_mhz,
            sm_clock_mean_mhz=reading.sm_clock_mean_mhz,
            sm_clock_min_mhz=reading.sm_clock_min_mhz,
            mem_clock_mhz=reading.mem_clock_mhz,
            clock_event_reasons=reading.clock_event_reasons,
            temperature_c=reading.temperature_c,
            cap_held=reading.cap_held,
        )
        rows = request_records(
            base=base,
            items=batch,
            inputs=[i["record"] for i in inputs],
            predictions=result.texts,
            output_tokens=result.output_tokens,
            ttft_s=result.ttft_s,
            window=facts,
            last_call_s=result.elapsed_s,
        )
        ended = _now_iso()
        for row in rows:
            row.update(started_at=started, ended_at=ended)
            self.write(row)
        self.totals.windows += 1
        self.totals.requests_ok += len(rows)
        if math.isfinite(reading.energy_j):  # a counter reset gives NaN: keep the total usable
            self.totals.device_energy_j += reading.energy_j
        if not reading.trusted:
            self.totals.untrusted_windows += 1

    def _fail(
        self, base: Mapping[str, Any], batch: Sequence[Mapping[str, Any]], status: str, error: str
    ) -> None:
        log.warning("%s: %s", status, error)
        for row in failure_records(base=base, items=batch, status=status, error=error):
            row.update(started_at=_now_iso(), ended_at=_now_iso())
            self.write(row)
        self.totals.requests_failed += len(batch)
        self.totals.warnings.append(error)
