"""How real is the simulated GPU: simulated vs published DVFS and power-limit points, side by side.

The points and their citations are in benchmarks/data/sim_published.json (role `fit`: the point
set a constant of the simulated GPU; `held-out`: never used to set anything). A value passes
within +-30 %, a published range passes when the simulated value lies in it widened by 30 %.
Exits 1 when any point fails. Runs in about a second, no GPU, no Hydra/DVC.

    python benchmarks/sim_realism.py            # the table
    python benchmarks/sim_realism.py --markdown # the table as the README shows it
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from llm_energy.sim import archspec, roofline  # noqa: E402
from llm_energy.sim import model as simmodel  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "sim_published.json"
TOLERANCE = 0.30


@dataclass(frozen=True)
class RealismRow:
    point: dict[str, Any]
    simulated: float

    @property
    def published_text(self) -> str:
        if "published_range" in self.point:
            lo, hi = self.point["published_range"]
            return f"{_fmt(lo)}-{_fmt(hi)}"
        return _fmt(self.point["published"])

    @property
    def ratio(self) -> float:
        """simulated / published; for a range, over the nearest end (1 inside it)."""
        if "published_range" in self.point:
            lo, hi = self.point["published_range"]
            nearest = min(max(self.simulated, lo), hi)
            return 1.0 if nearest == self.simulated else self.simulated / nearest
        return self.simulated / self.point["published"]

    @property
    def ok(self) -> bool:
        if "published_range" in self.point:
            lo, hi = self.point["published_range"]
            return lo / (1 + TOLERANCE) <= self.simulated <= hi * (1 + TOLERANCE)
        return abs(self.ratio - 1.0) <= TOLERANCE


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _workload(p: dict[str, Any]) -> roofline.Workload:
    arch = dict(yaml.safe_load((ROOT / "conf" / "model" / f"{p['arch_conf']}.yaml").read_text()))
    arch = dict(arch["arch"]) | dict(p.get("arch_overrides", {}))
    return roofline.Workload(
        archspec.arch_spec(arch),
        2,  # bf16
        int(p["batch"]),
        int(p["prompt_tokens"]),
        int(p["new_tokens"]),
        str(p["engine"]),
        bool(p.get("compiled", False)),
    )


def simulate(p: dict[str, Any]) -> float:
    """The simulated value of one published point's quantity."""
    gpu, work, q = simmodel.get_gpu_model(p["gpu"]), _workload(p), p["quantity"]
    run = simmodel.run_workload(gpu, work, gpu.sm_max_mhz)  # default clocks, default limit
    if q == "j_per_token":
        return run.energy_j / (work.batch * work.new_tokens)
    if q == "decode_power_w":
        return run.decode_energy_j / run.cost.decode_s
    if q in ("energy_saving", "time_ratio"):
        ref = simmodel.run_workload(gpu, work, p["f_ref_mhz"])
        low = simmodel.run_workload(gpu, work, p["f_mhz"])
        if q == "time_ratio":
            return low.cost.time_s / ref.cost.time_s
        return 1.0 - low.energy_j / ref.energy_j
    if q == "decode_time_ratio_power_limit":
        capped = simmodel.run_workload(gpu, work, gpu.sm_max_mhz, None, p["power_limit_w"])
        return capped.cost.decode_s / run.cost.decode_s
    if q == "best_decode_saving":
        clocks = gpu.supported_sm_clocks_mhz()
        best_j = min(simmodel.run_workload(gpu, work, f).decode_energy_j for f in clocks)
        return 1.0 - best_j / run.decode_energy_j
    raise ValueError(f"unknown quantity {q!r} in {DATA.name}")


def realism_table(path: Path = DATA) -> list[RealismRow]:
    points = json.loads(path.read_text())["points"]
    return [RealismRow(p, simulate(p)) for p in points]


def format_table(rows: list[RealismRow], *, markdown: bool = False) -> str:
    head = ("source", "GPU", "model", "quantity", "knob", "published", "simulated", "ratio", "role")
    body = [
        (
            r.point["source"],
            r.point["gpu"].upper(),
            r.point["model"],
            r.point["quantity"],
            r.point["knob"],
            r.published_text,
            _fmt(r.simulated),
            f"{r.ratio:.2f}" + ("" if r.ok else " FAIL"),
            r.point["role"],
        )
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *body]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    rows = realism_table()
    print(format_table(rows, markdown=args.markdown))
    bad = [r.point["id"] for r in rows if not r.ok]
    n_fit = sum(r.point["role"] == "fit" for r in rows)
    print(f"\n{len(rows) - len(bad)}/{len(rows)} points within ±30 % ({n_fit} in the fit)")
    if bad:
        print("outside ±30 %: " + ", ".join(bad), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
