"""Calibration of the simulated GPU against measured anchors (pure: the caller reads the files):
/work/shared/anchors (H200, bf16, greedy, default clocks; docs/device.md); error = sim/meas - 1."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from llm_energy.sim import archspec, roofline
from llm_energy.sim import model as simmodel

# Anchor model name -> conf/model file stem (whose `arch` block is that architecture).
ANCHOR_MODELS: dict[str, str] = {
    "gpt2": "gpt2",
    "gptneo2.7b": "gpt_neo_2_7b",
    "gptj6b": "gpt_j_6b",
    "mistral7b": "mistral_7b",
    "falcon7b": "falcon_7b",
    "t5-3b": "t5_3b",
}
ANCHOR_DTYPE_BYTES = 2  # every anchor ran in bf16


@dataclass(frozen=True)
class Anchor:
    """One measured shape: medians over its repetitions."""

    source: str
    model: str  # anchor model name (ANCHOR_MODELS key)
    engine: str
    compiled: bool
    batch: int
    prompt_tokens: int
    new_tokens: int
    latency_s: float
    j_per_token: float

    @property
    def tokens(self) -> int:
        return self.batch * self.new_tokens


# The anchors README, "static KV cache vs eager, batch 1, 128 in / 128 out": tok/s and J/token
# (the static calls were compiled: "first call including compilation: 14 s and 72 s").
README_BATCH1: tuple[tuple[str, str, float, float], ...] = (
    ("gpt2", "static", 569.0, 0.23),
    ("gpt2", "eager", 192.0, 0.73),
    ("mistral7b", "static", 146.0, 2.20),
    ("mistral7b", "eager", 52.5, 3.87),
)


def bare_generate_anchors(rows: Iterable[Mapping[str, Any]]) -> list[Anchor]:
    """Median latency and J/token per (model, batch, n_in, n_out) of h200_bare_generate.json."""
    groups: dict[tuple[str, int, int, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = (str(row["model"]), int(row["batch"]), int(row["n_in"]), int(row["n_out"]))
        groups.setdefault(key, []).append(row)
    out = []
    for (model, batch, n_in, n_out), group in groups.items():
        latency_s = statistics.median(float(r["latency_s"]) for r in group)
        j_per_token = statistics.median(float(r["j_per_tok"]) for r in group)
        shape = (model, "eager", False, batch, n_in, n_out)
        out.append(Anchor("h200_bare_generate.json", *shape, latency_s, j_per_token))
    return out


def readme_anchors() -> list[Anchor]:
    return [
        Anchor("README.md", model, engine, engine == "static", 1, 128, 128, 128 / tps, jpt)
        for model, engine, tps, jpt in README_BATCH1
    ]


@dataclass(frozen=True)
class CalibrationRow:
    source: str
    model: str
    engine: str
    batch: int
    prompt_tokens: int
    new_tokens: int
    measured_latency_s: float
    simulated_latency_s: float
    measured_j_per_token: float
    simulated_j_per_token: float
    simulated_power_w: float
    # Its latency was a fitting input: a bare batch-1 eager call sets its architecture's
    # host_scale, the two compiled static calls set graph_op_s and graph_step_overhead_s.
    fitted: bool

    @property
    def latency_error(self) -> float:
        return self.simulated_latency_s / self.measured_latency_s - 1.0

    @property
    def j_per_token_error(self) -> float:
        return self.simulated_j_per_token / self.measured_j_per_token - 1.0

    @property
    def measured_tokens_per_s(self) -> float:
        return self.batch * self.new_tokens / self.measured_latency_s

    @property
    def simulated_tokens_per_s(self) -> float:
        return self.batch * self.new_tokens / self.simulated_latency_s

    def to_dict(self) -> dict[str, Any]:
        derived = "latency_error j_per_token_error measured_tokens_per_s simulated_tokens_per_s"
        return asdict(self) | {k: getattr(self, k) for k in derived.split()}


def simulate_anchor(
    gpu: simmodel.GpuModel, anchor: Anchor, arch: Mapping[str, Any]
) -> CalibrationRow:
    """The anchor's workload on the GPU model at its default clocks (boost under load)."""
    shape = (anchor.batch, anchor.prompt_tokens, anchor.new_tokens, anchor.engine, anchor.compiled)
    work = roofline.Workload(archspec.arch_spec(arch), ANCHOR_DTYPE_BYTES, *shape)
    run = simmodel.run_workload(gpu, work, gpu.sm_max_mhz)
    return CalibrationRow(
        source=anchor.source,
        model=anchor.model,
        engine=anchor.engine + ("+compile" if anchor.compiled else ""),
        batch=anchor.batch,
        prompt_tokens=anchor.prompt_tokens,
        new_tokens=anchor.new_tokens,
        measured_latency_s=anchor.latency_s,
        simulated_latency_s=run.cost.time_s,
        measured_j_per_token=anchor.j_per_token,
        simulated_j_per_token=run.energy_j / anchor.tokens,
        simulated_power_w=run.power_w,
        fitted=anchor.compiled or (anchor.source != "README.md" and anchor.batch == 1),
    )


def calibration_table(
    gpu: simmodel.GpuModel, anchors: Iterable[Anchor], archs: Mapping[str, Mapping[str, Any]]
) -> list[CalibrationRow]:
    """One row per anchor; `archs` maps an anchor model name to its `model.arch` block."""
    return [simulate_anchor(gpu, a, archs[a.model]) for a in anchors]
