"""The one module that owns units: every quantity carries its unit in its name, and conversions
(NVML mJ / mW, RAPL µJ, codecarbon kWh) happen here and nowhere else."""

from __future__ import annotations

MJ_PER_J = 1_000.0  # millijoules per joule
UJ_PER_J = 1_000_000.0  # microjoules per joule
MW_PER_W = 1_000.0  # milliwatts per watt
J_PER_KWH = 3_600_000.0
NS_PER_S = 1_000_000_000.0


def mj_to_j(energy_mj: float) -> float:
    return float(energy_mj) / MJ_PER_J


def uj_to_j(energy_uj: float) -> float:
    return float(energy_uj) / UJ_PER_J


def mw_to_w(power_mw: float) -> float:
    return float(power_mw) / MW_PER_W


def w_to_mw(power_w: float) -> int:
    return round(float(power_w) * MW_PER_W)


def kwh_to_j(energy_kwh: float) -> float:
    return float(energy_kwh) * J_PER_KWH


def j_to_kwh(energy_j: float) -> float:
    return float(energy_j) / J_PER_KWH


def ns_to_s(time_ns: float) -> float:
    return float(time_ns) / NS_PER_S


def energy_j(power_w: float, elapsed_s: float) -> float:
    """Energy of a constant power over a time span."""
    return float(power_w) * float(elapsed_s)


def mean_power_w(energy_j_value: float, elapsed_s: float) -> float:
    """Average power of a window; NaN for an empty window rather than a division error."""
    return float(energy_j_value) / elapsed_s if elapsed_s > 0 else float("nan")
