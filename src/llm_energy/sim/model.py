"""Pure physics of the simulated GPU under DVFS (no I/O, no state); the laws are in docs/device.md:
power P(f, u) on a linear V(f) curve, latency from the roofline (`llm_energy.sim.roofline`), and
the legacy wall-clock law t(f, m) = t_ref · (α · f_max / f + (1 − α) · m_max / m)."""

from __future__ import annotations

import dataclasses
import functools
import math
import uuid
from dataclasses import dataclass

from llm_energy.device.base import REASON_GPU_IDLE, REASON_SW_POWER_CAP
from llm_energy.sim import roofline
from llm_energy.units import energy_j as _energy_j

REASON_APPLICATIONS_CLOCKS_SETTING = 0x2  # the NVML bit the model raises for a clock lock


@dataclass(frozen=True)
class GpuModel:
    """Per-GPU parameters. Clocks in MHz, power in W, temperatures in °C."""

    key: str
    name: str  # what NVML would report as the device name
    sm_min_mhz: int
    sm_max_mhz: int
    sm_step_mhz: int
    mem_clocks_mhz: tuple[int, ...]  # highest first (NVML order); the first is the default
    idle_sm_mhz: int  # SM clock the driver drops to when idle and unlocked
    idle_ref_mhz: int  # clock at which idle_ref_w was measured
    idle_ref_w: float  # calibration anchor for P_static
    p_dyn_max_w: float  # dynamic power at f_max, V_max, u = 1
    v_min_rel: float  # V(f_min) / V_max
    u_idle: float  # activity factor at idle
    power_limit_w: float  # default (and maximum) power limit
    power_limit_min_w: float
    temp_ambient_c: float
    thermal_c_per_w: float  # steady-state temperature rise per watt
    update_period_s: float  # energy counter update period (H200 measured: ~0.1 s)
    roofline: roofline.RooflineParams  # throughput, host overhead and activity constants
    calibration: str  # where the numbers come from: measured anchors or spec-sheet estimates
    # Share of the HBM-streaming power that follows the memory clock, not the SM clock (HBM,
    # PHY, memory controller): fitted to published DVFS measurements (benchmarks/data/
    # sim_published.json, checked by benchmarks/sim_realism.py).
    mem_power_share: float = 0.0

    @property
    def mem_max_mhz(self) -> int:
        return max(self.mem_clocks_mhz)

    @property
    def p_static_w(self) -> float:
        """Static floor derived from the idle anchor: P_idle(idle_ref_mhz) = idle_ref_w."""
        return self.idle_ref_w - self._dynamic_w(self.idle_ref_mhz, self.u_idle)

    def _dynamic_w(self, f_mhz: float, u: float) -> float:
        return self.p_dyn_max_w * u * (f_mhz / self.sm_max_mhz) * voltage_rel(self, f_mhz) ** 2

    def supported_sm_clocks_mhz(self) -> list[int]:
        """Supported SM clocks, highest first like nvmlDeviceGetSupportedGraphicsClocks."""
        return list(range(self.sm_max_mhz, self.sm_min_mhz - 1, -self.sm_step_mhz))


# The host side of HF `generate` (op dispatch, Python), fitted on the H200 anchors' host: the
# eager batch-1 latency of each architecture sets its host_scale (falcon, gpt2, gpt_neo, gptj,
# mistral, t5; llama shares mistral's code path); host_op_s is their geometric mean. Other GPUs'
# hosts are assumed to run the same software as fast (an estimate).
HOST_SCALE_H200 = (
    ("falcon", 1.12),
    ("gpt2", 0.83),
    ("gpt_neo", 0.90),
    ("gptj", 1.05),
    ("llama", 0.86),
    ("mistral", 0.86),
    ("t5", 1.34),
)
ROOFLINE_H200 = roofline.RooflineParams(
    mem_bw_gbps=4800.0,  # HBM3e, 141 GB
    bw_efficiency=0.85,
    bw_knee_rel=0.5,
    tflops_16=989.0,  # dense bf16
    tflops_32=67.0,
    compute_efficiency=0.6,
    host_op_s=12.7e-6,
    step_overhead_s=0.33e-3,
    kernel_floor_s=2.5e-6,
    graph_op_s=0.96e-6,  # static cache + compile: GPT-2 569 tok/s, Mistral-7B 146 tok/s
    graph_step_overhead_s=1.09e-3,
    activity_busy=0.004,
    activity_mem=0.85,
    activity_compute=0.85,  # u at full tensor load: the 614 W of the anchors' matmul loop
    activity_kernel=0.02,  # GPT-2 eager decodes at ~128 W: small kernels barely light the chip
    host_scale=HOST_SCALE_H200,
)

# Calibrated on the H200 anchors: idle 126.6 W at 345 MHz, 700 W limit (200–700 W),
# 110 clocks 345–1980 step 15, memory 3201/2201, counter period ~0.1 s, matmul ~614 W.
H200 = GpuModel(
    key="h200",
    name="NVIDIA H200 (simulated)",
    sm_min_mhz=345,
    sm_max_mhz=1980,
    sm_step_mhz=15,
    mem_clocks_mhz=(3201, 2201),
    idle_sm_mhz=345,
    idle_ref_mhz=345,
    idle_ref_w=126.6,
    p_dyn_max_w=575.0,
    v_min_rel=0.70,
    u_idle=0.004,
    power_limit_w=700.0,
    power_limit_min_w=200.0,
    temp_ambient_c=25.0,
    thermal_c_per_w=0.055,
    update_period_s=0.1,
    roofline=ROOFLINE_H200,
    calibration="measured anchors (H200, /work/shared/anchors)",
    mem_power_share=0.6,  # fitted: H100 LLaMA's published -11.6 % energy at 1035 MHz
)
GPU_MODELS: dict[str, GpuModel] = {
    "h200": H200,
    # H100 SXM5 80 GB: same GH100 die, clock table and TDP as the H200; HBM3 at 2619 MHz
    # (3.35 TB/s), lower idle floor.
    "h100": dataclasses.replace(
        H200,
        key="h100",
        name="NVIDIA H100 80GB HBM3 (simulated)",
        mem_clocks_mhz=(2619,),
        idle_ref_w=70.0,
        p_dyn_max_w=630.0,
        roofline=dataclasses.replace(ROOFLINE_H200, mem_bw_gbps=3350.0),
        calibration="spec-sheet estimate",
    ),
    # A100 SXM4 40 GB: 210–1410 MHz step 15, HBM2 at 1215 MHz, 400 W (100–400 W).
    "a100": dataclasses.replace(
        H200,
        key="a100",
        name="NVIDIA A100-SXM4-40GB (simulated)",
        sm_min_mhz=210,
        sm_max_mhz=1410,
        mem_clocks_mhz=(1215,),
        idle_sm_mhz=210,
        idle_ref_mhz=210,
        idle_ref_w=55.0,
        p_dyn_max_w=345.0,
        power_limit_w=400.0,
        power_limit_min_w=100.0,
        thermal_c_per_w=0.1,
        # HBM2 1.56 TB/s, 312 dense bf16 TFLOPS, 19.5 fp32; slower small kernels (estimate).
        roofline=dataclasses.replace(
            ROOFLINE_H200,
            mem_bw_gbps=1555.0,
            tflops_16=312.0,
            tflops_32=19.5,
            kernel_floor_s=3.0e-6,
            graph_op_s=1.2e-6,
        ),
        calibration="spec-sheet estimate",
    ),
}


def get_gpu_model(key: str) -> GpuModel:
    try:
        return GPU_MODELS[key.lower()]
    except KeyError:
        known = ", ".join(sorted(GPU_MODELS))
        raise ValueError(f"unknown simulated GPU {key!r}: expected one of {known}") from None


def _check_f(gpu: GpuModel, f_mhz: float) -> float:
    if not math.isfinite(f_mhz) or f_mhz <= 0:
        raise ValueError(f"SM clock must be a positive number of MHz, got {f_mhz!r}")
    # Clamp: the hardware cannot run outside its DVFS table.
    return min(max(float(f_mhz), gpu.sm_min_mhz), gpu.sm_max_mhz)


def _check_unit(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def check_settings(alpha: float, utilization: float, noise_rel: float) -> None:
    """A simulated device's gpu.simulated_alpha / _utilization and noise, each in range."""
    _check_unit("simulated alpha", alpha)
    _check_unit("simulated utilization", utilization)
    if not 0.0 <= noise_rel < 0.5:
        raise ValueError(f"simulated noise_rel must lie in [0, 0.5), got {noise_rel!r}")


def voltage_rel(gpu: GpuModel, f_mhz: float) -> float:
    """V(f)/V_max, linear between v_min_rel at f_min and 1 at f_max."""
    f = _check_f(gpu, f_mhz)
    span = gpu.sm_max_mhz - gpu.sm_min_mhz
    return gpu.v_min_rel + (1.0 - gpu.v_min_rel) * (f - gpu.sm_min_mhz) / span


def power_w(
    gpu: GpuModel, f_mhz: float, utilization: float, mem_u: float = 0.0, mem_rel: float = 1.0
) -> float:
    """Board power at SM clock f with activity factor u (0 = idle logic, 1 = max dynamic), of which
    `mem_u` streams HBM: its `mem_power_share` follows only the memory clock (mem_rel = m/m_max)."""
    f = _check_f(gpu, f_mhz)
    u = _check_unit("utilization", utilization)
    mem = gpu.mem_power_share * min(_check_unit("memory activity", mem_u), u)
    return gpu.p_static_w + gpu._dynamic_w(f, u - mem) + gpu.p_dyn_max_w * mem * mem_rel


def idle_power_w(gpu: GpuModel, f_mhz: float) -> float:
    return power_w(gpu, f_mhz, gpu.u_idle)


def latency_scale(gpu: GpuModel, f_mhz: float, alpha: float, mem_mhz: float | None = None) -> float:
    """t(f, m) / t_ref: 1 at (f_max, m_max), grows as either clock drops."""
    f = _check_f(gpu, f_mhz)
    a = _check_unit("alpha", alpha)
    m = _check_mem(gpu, mem_mhz)
    return a * gpu.sm_max_mhz / f + (1.0 - a) * gpu.mem_max_mhz / m


def power_capped_sm_mhz(
    gpu: GpuModel, f_mhz: float, utilization: float, power_limit_w: float
) -> tuple[int, bool]:
    """Effective SM clock under a power limit: highest supported clock <= f whose power fits."""
    target = _check_f(gpu, f_mhz)
    candidates = [f for f in gpu.supported_sm_clocks_mhz() if f <= target + 1e-9]  # highest first
    for f in candidates:
        if power_w(gpu, f, utilization) <= power_limit_w + 1e-9:
            return f, f != candidates[0]
    return gpu.sm_min_mhz, True  # even the lowest clock does not fit: the driver goes lowest


def _check_mem(gpu: GpuModel, mem_mhz: float | None) -> float:
    m = float(mem_mhz) if mem_mhz is not None else float(gpu.mem_max_mhz)
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"memory clock must be a positive number of MHz, got {mem_mhz!r}")
    return m


@functools.lru_cache(maxsize=4096)  # sweeps repeat the same shapes at the same clocks
def workload_cost(
    gpu: GpuModel, work: roofline.Workload, f_mhz: float, mem_mhz: float | None = None
) -> roofline.WorkloadCost:
    """Roofline cost of one generate call at SM clock f and memory clock m."""
    f, m = _check_f(gpu, f_mhz), _check_mem(gpu, mem_mhz)
    return roofline.workload_cost(
        gpu.roofline, work, f_rel=f / gpu.sm_max_mhz, m_rel=m / gpu.mem_max_mhz
    )


@dataclass(frozen=True)
class WorkloadRun:
    """A workload as the simulated GPU runs it: its decode at `sm_mhz`, its prefill at
    `prefill_sm_mhz` (each after any power cap); `power_w` is the call's mean."""

    sm_mhz: int
    power_capped: bool
    cost: roofline.WorkloadCost
    power_w: float
    prefill_power_w: float = 0.0
    prefill_sm_mhz: int = 0

    @property
    def energy_j(self) -> float:
        return _energy_j(self.power_w, self.cost.time_s)

    @property
    def prefill_energy_j(self) -> float:
        return _energy_j(self.prefill_power_w, self.cost.prefill_s)

    @property
    def decode_energy_j(self) -> float:
        return self.energy_j - self.prefill_energy_j


def run_workload(
    gpu: GpuModel,
    work: roofline.Workload,
    f_mhz: float,
    mem_mhz: float | None = None,
    power_limit_w: float | None = None,
) -> WorkloadRun:
    """The workload's prefill and decode, each at the highest supported clock <= f whose power
    fits the limit (the driver's SW power cap acts only where the draw would exceed it)."""
    target = _check_f(gpu, f_mhz)
    limit = gpu.power_limit_w if power_limit_w is None else float(power_limit_w)
    mem_rel = _check_mem(gpu, mem_mhz) / gpu.mem_max_mhz
    candidates = [f for f in gpu.supported_sm_clocks_mhz() if f <= target + 1e-9] or [
        gpu.sm_min_mhz
    ]

    def fit(phase: str) -> tuple[int, roofline.WorkloadCost, float]:
        for f in candidates:  # highest first
            cost = workload_cost(gpu, work, f, mem_mhz)
            u, mem_u = (
                (cost.prefill_activity, cost.prefill_mem_activity)
                if phase == "prefill"
                else cost.decode_activity()
            )
            power = power_w(gpu, f, u, mem_u, mem_rel)
            if power <= limit + 1e-9 or f == candidates[-1]:
                return f, cost, power  # the lowest clock even if it does not fit
        raise AssertionError("unreachable: the last candidate always returns")

    (f_p, pre, p_pre), (f_d, dec, p_dec) = fit("prefill"), fit("decode")
    u_dec, mem_dec = dec.decode_activity()
    time_s = pre.prefill_s + dec.decode_s
    cost = dataclasses.replace(
        dec,
        time_s=time_s,
        prefill_s=pre.prefill_s,
        activity=(pre.prefill_activity * pre.prefill_s + u_dec * dec.decode_s) / time_s,
        mem_activity=(pre.prefill_mem_activity * pre.prefill_s + mem_dec * dec.decode_s) / time_s,
        prefill_activity=pre.prefill_activity,
        prefill_mem_activity=pre.prefill_mem_activity,
    )
    power = (p_pre * pre.prefill_s + p_dec * dec.decode_s) / time_s
    f_run = f_d if dec.decode_s > 0 else f_p
    capped = f_p != candidates[0] or (dec.decode_s > 0 and f_d != candidates[0])
    return WorkloadRun(f_run, capped, cost, power, p_pre, f_p)


def temperature_c(gpu: GpuModel, power_w_value: float) -> float:
    """Steady-state die temperature: ambient plus thermal resistance times power."""
    return gpu.temp_ambient_c + gpu.thermal_c_per_w * float(power_w_value)


def clock_event_reasons(
    gpu: GpuModel, sm_locked_mhz: int | None, busy: bool, power_capped: bool
) -> int:
    """NVML's clock-event-reason mask: a lock below f_max is an application-clock setting; a
    busy GPU held below its target by the power limit is power-capped; an idle one is idle."""
    mask = 0
    if sm_locked_mhz is not None and sm_locked_mhz < gpu.sm_max_mhz:
        mask |= REASON_APPLICATIONS_CLOCKS_SETTING
    if not busy:
        mask |= REASON_GPU_IDLE
    elif power_capped:
        mask |= REASON_SW_POWER_CAP
    return mask


def fake_uuid(gpu_key: str, index: int) -> str:
    """Stable fake UUID (same GPU model and index -> same UUID, across processes and hosts)."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"llm-energy/simulated/{gpu_key}/{index}"))
