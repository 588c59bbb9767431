"""Summarise a gpu_check.sh output folder: counter update period, window energies, CV, overhead."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def main(out: Path) -> int:
    rows = []
    for req in sorted(out.glob("requests_*.jsonl")):
        model = req.stem.removeprefix("requests_")
        run = json.loads((out / f"run_{model}.json").read_text())
        df = pd.read_json(req, lines=True)
        ok = df[df["status"] == "ok"]
        overhead_file = out / f"overhead_{model}.json"
        overhead = json.loads(overhead_file.read_text()) if overhead_file.exists() else {}
        for task, g in ok.groupby("task"):
            windows = g.drop_duplicates("window_id")
            per_rep = g.groupby("rep")["energy_j"].sum()
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "energy_source": g["energy_source"].iloc[0],
                    "update_period_s": run.get("counter_update_period_s"),
                    "idle_w": next(iter(run.get("idle_power_w_by_freq", {}).values()), None),
                    "windows": len(windows),
                    "trusted_share": float(windows["window_trusted"].mean()),
                    "window_s_median": float(windows["window_s"].median()),
                    "window_energy_j_median": float(windows["window_energy_j"].median()),
                    "j_per_token": float(g["energy_j"].sum() / g["output_tokens"].sum()),
                    "cv_across_reps": float(per_rep.std(ddof=1) / per_rep.mean())
                    if len(per_rep) > 1
                    else None,
                    "sm_clock_mean_mhz": float(g["sm_clock_mean_mhz"].mean())
                    if g["sm_clock_mean_mhz"].notna().any()
                    else None,
                    "overhead_tps_ratio": overhead.get("tokens_per_s_ratio_median"),
                    "overhead_jpt_ratio": overhead.get("j_per_token_ratio_median"),
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(out / "summary.csv", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/gpu_check")))
