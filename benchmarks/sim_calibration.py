"""How close the simulated GPU comes to the measured anchors: one row per anchor, with the
measured and simulated latency, tokens/s and J/token and the error of each (goal: within
+-30 %). The table is printed and written to benchmarks/results/sim-calibration-<gpu>.json.

Anchors (/work/shared/anchors): bare `generate` calls on an H200, six architectures at two
shapes (h200_bare_generate.json), plus the README's batch-1 static-cache (+ compile) and eager
numbers. Rows marked `fit` were inputs of the calibration (see docs/device.md): a bare batch-1
eager latency sets its architecture's host_scale, the two compiled static latencies set the
CUDA-graph constants; every other number is a prediction. The H100 and A100 models are
spec-sheet estimates with nothing measured to compare against.

    python benchmarks/sim_calibration.py
    python benchmarks/sim_calibration.py --anchors /path/to/anchors --out table.json
    python benchmarks/sim_calibration.py --count-ops   # re-count archspec.OP_COUNTS (~1 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llm_energy.sim import archspec  # noqa: E402
from llm_energy.sim import calib as simcalib  # noqa: E402
from llm_energy.sim import model as simmodel  # noqa: E402

DEFAULT_ANCHORS = ROOT.parent / "shared" / "anchors"
RESULTS_DIR = ROOT / "benchmarks" / "results"
GOAL = 0.30


def load_table(gpu: simmodel.GpuModel, anchors_dir: Path) -> list[simcalib.CalibrationRow]:
    rows = json.loads((anchors_dir / "h200_bare_generate.json").read_text())["rows"]
    anchors = simcalib.bare_generate_anchors(rows) + simcalib.readme_anchors()
    archs = {
        name: yaml.safe_load((ROOT / "conf" / "model" / f"{stem}.yaml").read_text())["arch"]
        for name, stem in simcalib.ANCHOR_MODELS.items()
    }
    return simcalib.calibration_table(gpu, anchors, archs)


def format_table(table: list[simcalib.CalibrationRow]) -> str:
    head = (
        f"{'anchor':<12}{'engine':<16}{'shape':<14}"
        f"{'latency s (meas/sim)':>24}{'err':>8}{'tok/s (meas/sim)':>20}"
        f"{'J/token (meas/sim)':>22}{'err':>8}{'sim W':>7}  fit"
    )
    lines = [head, "-" * len(head)]
    for r in table:
        shape = f"b{r.batch} {r.prompt_tokens}/{r.new_tokens}"
        lines.append(
            f"{r.model:<12}{r.engine:<16}{shape:<14}"
            f"{r.measured_latency_s:>12.3f}{r.simulated_latency_s:>12.3f}{r.latency_error:>+8.0%}"
            f"{r.measured_tokens_per_s:>10.1f}{r.simulated_tokens_per_s:>10.1f}"
            f"{r.measured_j_per_token:>11.3f}{r.simulated_j_per_token:>11.3f}"
            f"{r.j_per_token_error:>+8.0%}{r.simulated_power_w:>7.0f}  {'fit' if r.fitted else ''}"
        )
    worst = max(max(abs(r.latency_error), abs(r.j_per_token_error)) for r in table)
    predicted = [abs(r.latency_error) for r in table if not r.fitted]
    lines.append(
        f"worst error {worst:.0%} (goal {GOAL:.0%}: {'PASS' if worst <= GOAL else 'FAIL'}); "
        f"worst latency error of the rows not fitted {max(predicted, default=0.0):.0%}; "
        "the J/token rows (all but the README's eager ones) informed the activity constants"
    )
    return "\n".join(lines)


def count_ops() -> dict[str, archspec.OpCounts]:
    """Ops per decoder layer and per step of each architecture type in the installed
    transformers: generate() of 2- and 4-layer random bf16 models under a TorchDispatchMode."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):  # type: ignore[no-untyped-def]
            self.n += 1
            return func(*args, **(kwargs or {}))

    layer_keys = {"gpt2": "n_layer", "gptj": "n_layer", "gpt_neo": "num_layers", "t5": "num_layers"}

    def ops(stem: str, layers: int, new: int) -> int:
        arch = yaml.safe_load((ROOT / "conf" / "model" / f"{stem}.yaml").read_text())["arch"]
        model_type = arch.pop("model_type")
        arch[layer_keys.get(model_type, "num_hidden_layers")] = layers
        if model_type == "gpt_neo":
            arch["attention_types"] = [[["global", "local"], layers // 2]]
        if model_type == "t5":
            arch["num_decoder_layers"] = layers
        auto = AutoModelForSeq2SeqLM if model_type == "t5" else AutoModelForCausalLM
        net = auto.from_config(AutoConfig.for_model(model_type, **arch), dtype=torch.bfloat16)
        ids = torch.randint(3, 100, (1, 16))
        kw = {"max_new_tokens": new, "min_new_tokens": new, "do_sample": False, "pad_token_id": 0}
        with torch.inference_mode():
            net.eval().generate(ids, **kw)
            counter = Count()
            with counter:
                net.generate(ids, **kw)
        return counter.n

    counts = {}
    for stem in ("tiny_gpt2", "tiny_gpt_neo", "tiny_gptj", "tiny_mistral", "tiny_llama",
                 "tiny_falcon", "tiny_t5"):  # fmt: skip
        per_step = {layers: (ops(stem, layers, 6) - ops(stem, layers, 2)) / 4 for layers in (2, 4)}
        per_layer = (per_step[4] - per_step[2]) / 2
        model_type = yaml.safe_load((ROOT / "conf" / "model" / f"{stem}.yaml").read_text())["arch"][
            "model_type"
        ]
        known = archspec.OP_COUNTS.get(model_type, archspec.DEFAULT_OP_COUNTS)
        counts[model_type] = archspec.OpCounts(  # (encoder ops: not re-counted here)
            round(per_layer), round(per_step[2] - 2 * per_layer), known.per_encoder_layer
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS)
    ap.add_argument("--gpu", default="h200", help="simulated GPU model (only h200 has anchors)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--count-ops", action="store_true", help="re-count OP_COUNTS and exit")
    args = ap.parse_args(argv)
    if args.count_ops:
        for model_type, counted in count_ops().items():
            table = archspec.OP_COUNTS.get(model_type)
            print(f"{model_type:<8} counted {counted}  table {table}")
        return 0
    gpu = simmodel.get_gpu_model(args.gpu)
    if not (args.anchors / "h200_bare_generate.json").exists():
        print(f"no anchors at {args.anchors}: pass --anchors", file=sys.stderr)
        return 2
    table = load_table(gpu, args.anchors)
    print(f"simulated {gpu.name} ({gpu.calibration}) vs measured H200 anchors")
    print(format_table(table))
    out = args.out or RESULTS_DIR / f"sim-calibration-{gpu.key}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "gpu": gpu.key,
        "calibration": gpu.calibration,
        "anchors": str(args.anchors),
        "goal_abs_error": GOAL,
        "roofline": dataclasses.asdict(gpu.roofline),
        "rows": [r.to_dict() for r in table],
    }
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    worst = max(max(abs(r.latency_error), abs(r.j_per_token_error)) for r in table)
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
