"""The known truth of the statistics' Monte Carlo (benchmarks/stats_calibration.py): tasks,
clocks, scenarios, the population values each statistic estimates, and the generator of one
replicate's schema-valid aggregate records. Nothing here runs the code under test.

Truth model. 3 tasks (strata) x 5 clocks (driver default, caps 1605/1305/1005/705 MHz) x
n items x 2 repetitions, batch 1, one window per request. Per replicate each task draws its
items: output tokens T ~ U{lo..hi}, input tokens ~ U{lo..hi} (ranges in TASKS), a cost factor
c ~ lognormal(0, 0.10) shared by every clock and repetition (c also scales latency: a costly
item runs longer), a quality q ~ Beta(a, b). Per window (clock f, rep r):
    energy  = c * jpt_task * m_f * T * lognormal(0, 0.02)
    latency = c * lpt_task * l_f * T * lognormal(0, sigma_L)      sigma_L = 0.02 or 0.05
    quality_f1 ~ Beta(20 q, 20 (1 - q))                            (mean q)
m_f, l_f are the true clock multipliers (1 at default). The population is the task's item
distribution (not the drawn items), so with E[c] = e^(0.1^2/2), E[noise] = e^(s^2/2):
    J/token          = jpt m E[c] E[eps_E]                      (Sigma E / Sigma T; c indep. of T)
    mean latency     = lpt l E[T] E[c] E[eps_L]
    tokens/s         = E[1/c] E[1/eps_L] / (lpt l)              (mean over items of T / latency)
    latency p50      = lpt l E[eps_L] median(c T)               (median by 2e6 items, fixed seed)
    dynamic J/token  = J/token - P0 * mean latency / E[T]
    quality_f1       = a / (a + b);  paired ratio cap/default = m_f;  saving = 100 (1 - m_f).
Prefill (batch 1): energy c PF_J n_in m eps_P, time c PF_S n_in l eps_P', eps ~ lognormal(0, 0.05);
decode = total - prefill, as the runner records it; decode share = 1 - E[prefill] / E[total].
Idle: true P0 = 60 W; each clock point (shared by the tasks, as the runner's point) estimates it
from k = 10 samples of sd 4 W: idle_power_w = their mean, idle_power_se_w = sd/sqrt(k),
idle_power_df = k - 1; dynamic_energy_j = energy_j - idle_power_w * window_s.

Scenarios: null (m = l = 1; 5 and 12 items; sigma_L 0.02 and 0.05); effect6 (m_1305 = 0.94);
effect15 (m_1305 = 0.85, sigma_L 0.05); latency_boundary (m_1305 = 0.85, l_1305 = 1.05, exactly
the 5 % latency budget: a claimed saving at 1305 is a false admission); regression_batch8 (40
items per task, batch 8: 5 windows of 8 fixed items per clock x 2 reps; per request energy
a + b in + c out, b = 0.30 J/token, window energy = its sum x an item-set factor x noise, both
mean-one lognormals (0.05, 0.02), each request holds the window's even share; the truth of the
`input_tokens` coefficient is b).
"""

from __future__ import annotations

import math
import sys
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from llm_energy.records import AGGREGATE_REQUESTS, typed_frame  # noqa: E402

BUDGET_PCT = 5.0  # the recommendation's latency budget: latency_boundary sits exactly on it
CLOCKS: tuple[int | None, ...] = (None, 1605, 1305, 1005, 705)
AFFECTED = 1305
SIGMA_C, SIGMA_E, P0_W, IDLE_SD_W, IDLE_K, KAPPA, REPS = 0.10, 0.02, 60.0, 4.0, 10, 20.0, 2
REG_A, REG_B, REG_C, REG_SET, BATCH = 20.0, 0.30, 3.0, 0.05, 8
# prefill (infer.phases): J and s per input token at default clocks, and its own noise
PF_J, PF_S, SIGMA_P = 0.02, 1e-4, 0.05


@dataclass(frozen=True)
class Task:
    jpt: float  # J per output token at default clocks (per unit cost factor)
    lpt: float  # s per output token at default clocks
    n_in: tuple[int, int]
    n_out: tuple[int, int]
    quality: tuple[float, float]  # Beta(a, b) of the item's mean F1


TASKS: dict[str, Task] = {
    "qa": Task(4.0, 0.020, (400, 800), (16, 40), (8.0, 3.0)),
    "generation": Task(3.0, 0.015, (100, 300), (32, 64), (5.0, 5.0)),
    "summarization": Task(5.0, 0.025, (500, 800), (24, 64), (6.0, 4.0)),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    n_items: int
    sigma_l: float = 0.02
    m: tuple[tuple[int, float], ...] = ()  # clock -> energy multiplier (1 elsewhere)
    lat: tuple[tuple[int, float], ...] = ()  # clock -> latency multiplier
    batch: int = 1

    @property
    def label(self) -> str:
        return f"{self.name} sL={self.sigma_l:g}"

    def mult(self, clock: int | None, which: str = "m") -> float:
        return dict(self.m if which == "m" else self.lat).get(clock or 0, 1.0)

    def seed(self, replicate: int) -> np.random.SeedSequence:
        key = f"{self.label}|{self.n_items}|{self.batch}".encode()
        return np.random.SeedSequence([2025, zlib.crc32(key), replicate])


SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario("null", n, s) for s in (0.02, 0.05) for n in (5, 12)),
    Scenario("effect6", 5, m=((AFFECTED, 0.94),)),
    *(Scenario("effect15", n, 0.05, m=((AFFECTED, 0.85),)) for n in (5, 12)),
    Scenario(
        "latency_boundary", 5, 0.05, m=((AFFECTED, 0.85),), lat=((AFFECTED, 1 + BUDGET_PCT / 100),)
    ),
    Scenario("regression_batch8", 40, batch=BATCH),
)


# ------------------------------------------------------------------------------------ truth
def _lognormal_mean(sigma: float) -> float:
    return math.exp(sigma**2 / 2)


@cache
def median_cost_tokens(name: str) -> float:
    """median(c T) over the task's item population, from 2e6 items (fixed seed)."""
    task, rng = TASKS[name], np.random.default_rng(7)
    tokens = rng.integers(task.n_out[0], task.n_out[1] + 1, size=2_000_000)
    return float(np.median(rng.lognormal(0.0, SIGMA_C, size=tokens.size) * tokens))


def truth(sc: Scenario, name: str, clock: int | None) -> dict[str, float]:
    """Population values of a configuration (task x clock) under the scenario."""
    task, m, lat = TASKS[name], sc.mult(clock), sc.mult(clock, "l")
    ec, el, mean_t = _lognormal_mean(SIGMA_C), _lognormal_mean(sc.sigma_l), sum(task.n_out) / 2
    jpt = task.jpt * m * ec * _lognormal_mean(SIGMA_E)
    latency = task.lpt * lat * mean_t * ec * el
    mean_in = sum(task.n_in) / 2
    energy_j = task.jpt * m * mean_t * ec * _lognormal_mean(SIGMA_E)
    prefill_j = PF_J * mean_in * ec * m * _lognormal_mean(SIGMA_P)
    prefill_s = PF_S * mean_in * ec * lat * _lognormal_mean(SIGMA_P)
    return {
        "prefill_energy_j": prefill_j,
        "decode_energy_j": energy_j - prefill_j,
        "decode_share_energy": 1.0 - prefill_j / energy_j,
        "decode_share_time": 1.0 - prefill_s / latency,
        "j_per_token": jpt,
        "latency_s": latency,
        "latency_p50": task.lpt * lat * el * median_cost_tokens(name),
        "tokens_per_s": ec * el / (task.lpt * lat),
        "dynamic_j_per_token": jpt - P0_W * latency / mean_t,
        "quality_f1": task.quality[0] / sum(task.quality),
        "ratio": m,
        "saving_pct": 100.0 * (1.0 - m),
    }


# -------------------------------------------------------------------------------- generator
# fmt: off
CONSTANT_COLUMNS: dict[str, Any] = {
    "run_id": "monte-carlo", "experiment": "stats-calibration", "model": "m",
    "model_family": "causal", "weights": "random", "model_params_m": 135.0, "engine": "eager",
    "output_mode": "natural", "energy_source": "nvml", "energy_kind": "measured",
    "clock_source": "none", "throttle_source": "none", "status": "ok", "prediction": "",
    "gpu_name": "sim-gpu", "gpu_uuid": "GPU-sim-0", "window_tail_s": 0.0, "window_repeats": 1,
    "started_at": "2025-01-01T00:00:00+00:00", "ended_at": "2025-01-01T00:00:01+00:00",
    "window_trusted": True, "quality_applicable": True, "input_truncated": False,
    "window_tick_aligned": False,
}
# fmt: on


def idle_baselines(rng: np.random.Generator) -> np.ndarray:
    """Per clock point (rows as CLOCKS): idle_power_w, idle_power_se_w from IDLE_K samples."""
    s = P0_W + IDLE_SD_W * rng.standard_normal((len(CLOCKS), IDLE_K))
    return np.column_stack([s.mean(axis=1), s.std(axis=1, ddof=1) / math.sqrt(IDLE_K)])


def _mean_one(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    return rng.lognormal(-(sigma**2) / 2, sigma, size=size)


def _task_frame(
    sc: Scenario, name: str, idle: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """One task's requests, window by window: rep, clock, then the item sets in order."""
    task, n, b = TASKS[name], sc.n_items, sc.batch
    n_in = rng.integers(task.n_in[0], task.n_in[1] + 1, size=n)
    n_out = rng.integers(task.n_out[0], task.n_out[1] + 1, size=n)
    cost, q = rng.lognormal(0.0, SIGMA_C, size=n), rng.beta(*task.quality, size=n)
    item_set = _mean_one(rng, REG_SET, n // b)
    rep, ck, sets = (a.ravel() for a in np.indices((REPS, len(CLOCKS), n // b)))
    items = sets[:, None] * b + np.arange(b)  # (windows, b)
    m = np.array([sc.mult(CLOCKS[k]) for k in ck])
    lat_m = np.array([sc.mult(CLOCKS[k], "l") for k in ck])
    if b == 1:
        i = items[:, 0]
        energy = cost[i] * task.jpt * m * n_out[i] * rng.lognormal(0.0, SIGMA_E, ck.size)
        latency = cost[i] * task.lpt * lat_m * n_out[i] * rng.lognormal(0, sc.sigma_l, ck.size)
    else:  # regression truth: sum of (a + b in + c out) x item-set factor x noise
        energy = (REG_A + REG_B * n_in[items] + REG_C * n_out[items]).sum(axis=1)
        energy *= item_set[sets] * _mean_one(rng, SIGMA_E, ck.size)
        latency = task.lpt * n_out[items].max(axis=1) * rng.lognormal(0, sc.sigma_l, ck.size)
    w, idx = np.repeat(np.arange(ck.size), b), items.ravel()
    # prefill: c x per-input-token cost x clock multiplier x its own noise (batch 1 only)
    phase = b == 1
    pf_j = (
        cost[idx] * PF_J * n_in[idx] * m[w] * rng.lognormal(0, SIGMA_P, w.size) if phase else None
    )
    pf_s = (
        cost[idx] * PF_S * n_in[idx] * lat_m[w] * rng.lognormal(0, SIGMA_P, w.size)
        if phase
        else None
    )
    f1 = rng.beta(KAPPA * q[idx], KAPPA * (1.0 - q[idx]))
    # fmt: off
    return pd.DataFrame({
        "task": name, "item_id": [f"{name}-{i}" for i in idx], "rep": rep[w], "window_id": w,
        "batch_index": np.tile(np.arange(b), ck.size), "quality_f1": f1,
        "freq_requested_mhz": [CLOCKS[k] for k in ck[w]], "output_tokens_target": task.n_out[1],
        "input_tokens": n_in[idx], "output_tokens": n_out[idx], "latency_s": latency[w],
        "window_energy_j": energy[w], "idle_power_w": idle[ck[w], 0],
        "idle_power_se_w": idle[ck[w], 1], "prefill_energy_j": pf_j, "prefill_time_s": pf_s,
    })
    # fmt: on


def generate(sc: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """One replicate's schema-valid aggregate records."""
    idle = idle_baselines(rng)
    df = pd.concat([_task_frame(sc, name, idle, rng) for name in TASKS], ignore_index=True)
    k = sc.batch
    df["window_id"] = pd.factorize(df["task"] + ":" + df["window_id"].astype(str))[0] + 1
    df["task_kind"] = df["task"]
    df["freq_applied_mhz"] = df["freq_requested_mhz"]
    df["cap_held"] = [None if pd.isna(f) else True for f in df["freq_requested_mhz"]]
    df["batch_size"] = df["batch_fill"] = k
    df["window_s"] = df["latency_s"]
    df["tokens_per_s"] = df["output_tokens"] / df["latency_s"]
    df["energy_j"] = df["window_energy_j"] / k
    df["idle_power_before_w"] = df["idle_power_after_w"] = df["idle_power_w"]
    df["idle_power_df"] = IDLE_K - 1
    df["dynamic_energy_j"] = df["energy_j"] - df["idle_power_w"] * df["window_s"] / k
    df["dynamic_energy_se_j"] = df["idle_power_se_w"] * df["window_s"] / k
    df["decode_energy_j"] = df["energy_j"] - df["prefill_energy_j"]  # as run/plan.phase_split
    df["decode_time_s"] = df["latency_s"] - df["prefill_time_s"]
    for col, value in CONSTANT_COLUMNS.items():
        df[col] = [value] * len(df)
    df["references"] = [[] for _ in range(len(df))]
    for col in AGGREGATE_REQUESTS.columns:
        if col.name not in df.columns and col.nullable:
            df[col.name] = None
    return typed_frame(df, AGGREGATE_REQUESTS, "monte carlo", "fix the generator")
