"""The acceptance table (benchmarks/acceptance.py): one row per figure against its goal, with
PASS / FAIL / SKIP, built from each phase's result."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from overhead import GOAL_J_PER_TOKEN_WITHIN, GOAL_TOKENS_PER_S_RATIO_MIN

GOAL_REPEAT_CV_MAX = 0.02
REPEAT_TASKS: tuple[str, ...] = ("generation", "qa", "summarization")


@dataclass
class GoalRow:
    check: str
    model: str
    measured: str
    goal: str
    status: str  # PASS | FAIL | SKIP
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 100:.2f} %"


def overhead_rows(role: str, result: dict[str, Any] | None, reason: str = "") -> list[GoalRow]:
    if result is None:
        return [
            GoalRow(
                "overhead tokens/s infer/bare",
                role,
                reason,
                f">= {GOAL_TOKENS_PER_S_RATIO_MIN}",
                "SKIP",
            ),
            GoalRow(
                "overhead J/token infer/bare",
                role,
                reason,
                f"1 +- {GOAL_J_PER_TOKEN_WITHIN}",
                "SKIP",
            ),
        ]
    tps, jpt = result["tokens_per_s_ratio"], result["j_per_token_ratio"]
    return [
        GoalRow(
            "overhead tokens/s infer/bare",
            role,
            f"{tps['median']:.4f} (CI {tps['ci_low']:.4f}-{tps['ci_high']:.4f}, {tps['n']} rounds)",
            f">= {GOAL_TOKENS_PER_S_RATIO_MIN}",
            verdict(result["pass_tokens_per_s"]),
            tps["median"],
        ),
        GoalRow(
            "overhead J/token infer/bare",
            role,
            f"{jpt['median']:.4f} (CI {jpt['ci_low']:.4f}-{jpt['ci_high']:.4f}, {jpt['n']} rounds)",
            f"1 +- {GOAL_J_PER_TOKEN_WITHIN}",
            verdict(result["pass_j_per_token"]),
            jpt["median"],
        ),
    ]


def repeat_rows(role: str, result: dict[str, Any] | None, reason: str = "") -> list[GoalRow]:
    rows = []
    for task in REPEAT_TASKS:
        check = f"repeatability J/token CV, {task}"
        goal = f"<= {GOAL_REPEAT_CV_MAX:.0%}"
        per = (result or {}).get("tasks", {}).get(task)
        if per is None:
            rows.append(GoalRow(check, role, reason or "not run", goal, "SKIP"))
            continue
        value = per["j_per_token_cv"]
        rows.append(
            GoalRow(
                check,
                role,
                f"{pct(value)} over {per['repetitions']} reps ({per['j_per_token_mean']:.4g} J/token)",
                goal,
                verdict(math.isfinite(value) and value <= GOAL_REPEAT_CV_MAX),
                value,
            )
        )
    return rows


def tick_rows(role: str, result: dict[str, Any] | None, reason: str = "") -> list[GoalRow]:
    check, goal = "tick-aligned vs random-phase window energy CV", "tick < random"
    if result is None:
        return [GoalRow(check, role, reason, goal, "SKIP")]
    tick, rand = result["tick_aligned"], result["random_phase"]
    return [
        GoalRow(
            check,
            role,
            f"{pct(tick['energy_cv'])} vs {pct(rand['energy_cv'])} "
            f"({result['windows_per_kind']} x {result['periods_per_window']:g} periods)",
            goal,
            verdict(result["pass"]),
            tick["energy_cv"],
        )
    ]


def split_rows(role: str, result: dict[str, Any] | None, reason: str = "") -> list[GoalRow]:
    """Prefill/decode split: the shares are findings; the goal is that the phases are
    consistent (decode ≥ 0 on every request; prefill + decode = total within 5 %)."""
    check, goal = "prefill/decode split (decode share of time, energy)", "decode >= 0, sum 5 %"
    if result is None:
        return [GoalRow(check, role, reason or "not run", goal, "SKIP")]
    ok = result["min_decode_energy_j"] >= 0 and result["max_sum_mismatch"] <= 0.05
    measured = (
        f"{pct(result['decode_share_time'])}, {pct(result['decode_share_energy'])} "
        f"({result['prefill_j_per_request']:.3g} + {result['decode_j_per_request']:.3g} J/request)"
    )
    return [GoalRow(check, role, measured, goal, verdict(ok), result["decode_share_energy"])]


def print_table(rows: Sequence[GoalRow], out: Callable[[str], None] = print) -> None:
    headers = ("check", "model", "measured", "goal", "result")
    cells = [(r.check, r.model, r.measured, r.goal, r.status) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out(line)
    out("  ".join("-" * w for w in widths))
    for c in cells:
        out("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def skip_rows(phase: str, role: str, reason: str) -> list[GoalRow]:
    if phase == "overhead":
        return overhead_rows(role, None, reason)
    if phase == "repeat":
        return repeat_rows(role, None, reason)
    if phase == "split":
        return split_rows(role, None, reason)
    return tick_rows(role, None, reason)
