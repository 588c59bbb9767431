"""The README's example DVFS report: a simulated Mistral-7B clock sweep, run as a user runs it.

A fresh copy of the repo composes `experiment=sim_sweep model=mistral_7b model.weights=random`
(the simulated H200, the default clock and 5 caps from 100 % to 35 % of its maximum, 6 items
per task), runs `dvc repro` and copies the Pareto and J/token-vs-clock figures to docs/example/
with a short table (docs/example/table.md): J/token per task and clock, p50 latency, and the
change against the default clock from the stats stage's paired test. Every number is simulated.

    python benchmarks/example_sweep.py       # ~5 min on 2 cores; run it alone
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from bench_common import fresh_workspace  # noqa: E402

OVERRIDES = ["experiment=sim_sweep", "model=mistral_7b", "model.weights=random"]
FIGURES = ("pareto.png", "energy_vs_freq.png")
OUT = ROOT / "docs" / "example"


def run_sweep(ws: Path, env: dict[str, str]) -> None:
    def run(*cmd: str) -> None:
        proc = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")

    run(sys.executable, "-m", "llm_energy.cli.main", "compose", *OVERRIDES)
    run("git", "commit", "-qam", "simulated Mistral-7B sweep")
    run(sys.executable, "-m", "dvc", "repro", "-q")


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def table(summary: pd.DataFrame, pairwise: pd.DataFrame) -> str:
    """Markdown: one row per task and clock; the change is the paired ratio of J/token."""
    change = pairwise[pairwise["metric"] == "j_per_token"].set_index(["task", "freq_mhz"])
    lines = [
        "| task | SM clock | J/token [95 % CI] | p50 latency (s) | J/token vs default [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    order = summary.sort_values(["task", "default_clocks", "freq_applied_mhz"], ascending=False)
    for _, row in order.iterrows():
        clock = "default" if row["default_clocks"] else f"{row['freq_applied_mhz']:.0f} MHz"
        ratio = "reference"
        key = (row["task"], row["freq_applied_mhz"])
        if not row["default_clocks"] and key in change.index:
            c = change.loc[key]
            ratio = (
                f"{100 * (c['ratio'] - 1):+.1f} % "
                f"[{100 * (c['ratio_ci_low'] - 1):+.1f}, {100 * (c['ratio_ci_high'] - 1):+.1f}]"
            )
        lines.append(
            f"| {row['task']} | {clock} | {_fmt(row['j_per_token_mean'])} "
            f"[{_fmt(row['j_per_token_ci_low'])}, {_fmt(row['j_per_token_ci_high'])}] "
            f"| {_fmt(row['latency_p50_s'])} | {ratio} |"
        )
    kinds = ", ".join(sorted(summary["energy_kind"].unique()))
    return "\n".join(lines) + f"\n\nEnergy kind of every row: **{kinds}**.\n"


def phase_table(summary: pd.DataFrame, phases: pd.DataFrame) -> str:
    """Markdown: where the joules go per task at default clocks, and each phase's change at
    the cap with the largest J/token saving (the stats stage's paired ratios)."""
    best = summary[~summary["default_clocks"]].sort_values("j_per_token_mean").groupby("task")
    lines = [
        "| task | decode share of time | decode share of energy | cap | prefill energy | "
        "prefill time | decode energy | decode time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in summary[summary["default_clocks"]].sort_values("task").iterrows():
        task, cap = row["task"], best.first().loc[row["task"], "freq_applied_mhz"]
        at = phases[(phases["task"] == task) & (phases["freq_mhz"] == cap)].set_index("metric")
        change = [
            f"{100 * (at.loc[m, 'ratio'] - 1):+.0f} %"
            for m in ("prefill_energy_j", "prefill_time_s", "decode_energy_j", "decode_time_s")
        ]
        lines.append(
            f"| {task} | {100 * row['decode_share_time_mean']:.1f} % "
            f"| {100 * row['decode_share_energy_mean']:.1f} % | {cap:.0f} MHz | "
            + " | ".join(change)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="llm-energy-example-") as tmp:
        ws = Path(tmp) / "ws"
        run_sweep(ws, fresh_workspace(ws, Path(tmp) / "state"))
        OUT.mkdir(parents=True, exist_ok=True)
        for name in FIGURES:
            shutil.copy2(ws / "reports" / "figures" / name, OUT / name)
        summary = pd.read_csv(ws / "data" / "aggregate" / "summary.csv")
        pairwise = pd.read_csv(ws / "reports" / "stats" / "pairwise.csv")
        phases = pd.read_csv(ws / "reports" / "stats" / "phases.csv")
        text = table(summary, pairwise) + "\n" + phase_table(summary, phases)
    (OUT / "table.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {', '.join(FIGURES)} and table.md to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
