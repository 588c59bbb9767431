"""Every tiny architecture goes through the same materialise -> load -> generate path."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import yaml

from helpers import CONF, PARAMS
from llm_energy.config.settings import ModelConfig
from llm_energy.device.errors import DeviceNotFoundError
from llm_energy.io.models import ModelLoadError, load_model, materialize
from llm_energy.run.engine import (
    cuda_indices_for_uuids,
    max_memory_for,
)
from llm_energy.run.engine import (
    load_generator as load_generator_,
)
from llm_energy.run.hf_generate import Generator as Generator_

Generator = partial(
    Generator_,
    engine=PARAMS["infer"]["engine"],
    chat_template=False,
    allow_compile=PARAMS["infer"]["compile"],
)
load_generator = partial(
    load_generator_, engine=PARAMS["infer"]["engine"], allow_compile=PARAMS["infer"]["compile"]
)

TEXTS = ["The quick brown fox jumps over the lazy dog."] * 20 + [
    "Energy per token under frequency caps."
] * 20
TINY = sorted(p.stem for p in (CONF / "model").glob("tiny_*.yaml"))


def _model(name: str) -> ModelConfig:
    return ModelConfig.parse(yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", TINY)
def test_tiny_architecture_generates_fixed_and_natural(name: str, tmp_path: Path) -> None:
    model = _model(name)
    materialize(model, tmp_path, TEXTS)
    net, tok = load_model(model, tmp_path, device="cpu", seed=0, device_map=None, max_memory=None)
    gen = Generator(net, tok, family=model.family, device="cpu")
    ids = [
        gen.encode("the quick brown fox"),
        gen.encode("energy per token under caps and more words"),
    ]
    fixed = gen.generate(ids, max_new_tokens=6, fixed=True, measure_ttft=True)
    assert fixed.output_tokens == [6, 6] and len(fixed.texts) == 2
    assert fixed.ttft_s is not None and 0 < fixed.ttft_s <= fixed.elapsed_s
    natural = gen.generate(ids[:1], max_new_tokens=6, fixed=False, measure_ttft=True)
    assert 1 <= natural.output_tokens[0] <= 6
    nll, n = gen.reference_nll(ids[0], "jumps over the lazy dog")
    assert n > 0 and nll > 0


def test_random_init_is_seeded(tmp_path: Path) -> None:
    model = _model("tiny_gpt2")
    materialize(model, tmp_path, TEXTS)
    a, _ = load_model(model, tmp_path, device="cpu", seed=1, device_map=None, max_memory=None)
    b, _ = load_model(model, tmp_path, device="cpu", seed=1, device_map=None, max_memory=None)
    c, _ = load_model(model, tmp_path, device="cpu", seed=2, device_map=None, max_memory=None)
    wa, wb, wc = (next(m.parameters()).detach() for m in (a, b, c))
    assert wa.equal(wb) and not wa.equal(wc)


def test_natural_mode_counts_up_to_eos(tmp_path: Path) -> None:
    import torch

    model = _model("tiny_gpt2")
    materialize(model, tmp_path, TEXTS)
    net, tok = load_model(model, tmp_path, device="cpu", seed=0, device_map=None, max_memory=None)
    gen = Generator(net, tok, family="causal", device="cpu")
    eos = tok.eos_token_id
    assert gen._count_output(torch.tensor([[5, 6, eos, 0, 0], [5, 6, 7, 8, 9]]), fixed=False) == [
        3,
        5,
    ]
    assert gen._count_output(torch.tensor([[5, eos, 7]]), fixed=True) == [3]


def test_static_cache_engine_runs(tmp_path: Path) -> None:
    model = _model("tiny_llama")
    materialize(model, tmp_path, TEXTS)
    net, tok = load_model(model, tmp_path, device="cpu", seed=0, device_map=None, max_memory=None)
    gen = Generator(net, tok, family="causal", device="cpu", engine="static")
    out = gen.generate(
        [gen.encode("the quick brown fox")], max_new_tokens=4, fixed=True, measure_ttft=True
    )
    assert out.output_tokens == [4]


def test_missing_or_mismatched_materialisation_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="run the `model` stage"):
        load_model(
            _model("tiny_gpt2"), tmp_path, device="cpu", seed=0, device_map=None, max_memory=None
        )
    materialize(_model("tiny_gpt2"), tmp_path, TEXTS)
    with pytest.raises(ModelLoadError, match="re-run the `model` stage"):
        load_model(
            _model("tiny_t5"), tmp_path, device="cpu", seed=0, device_map=None, max_memory=None
        )


def test_materialised_folder_is_relocatable(tmp_path: Path) -> None:
    """DVC restores cached outputs into other workspaces: the manifest must not pin a path."""
    import json
    import shutil

    model = _model("tiny_gpt2")
    materialize(model, tmp_path / "a", TEXTS)
    assert str(tmp_path) not in (tmp_path / "a" / "manifest.json").read_text()
    shutil.move(tmp_path / "a", tmp_path / "b")
    net, _ = load_model(
        model, tmp_path / "b", device="cpu", seed=0, device_map=None, max_memory=None
    )
    assert (
        net is not None
        and json.loads((tmp_path / "b" / "manifest.json").read_text())["load_from"] == "."
    )


def test_offline_hub_model_suggests_random_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = yaml.safe_load((CONF / "model" / "gpt2.yaml").read_text())
    cfg = ModelConfig.parse(spec)
    assert cfg.source == "hub" and cfg.weights == "pretrained"
    materialize(cfg, tmp_path, ["some text"])
    with pytest.raises(ModelLoadError, match=r"model\.weights=random"):
        load_model(cfg, tmp_path, device="cpu", seed=0, device_map=None, max_memory=None)


# ------------------------------------------------------------------ several GPUs (device_map)


def test_group_gpus_map_to_cuda_indexes_by_uuid_in_group_order() -> None:
    cuda = ["GPU-bbbb", "GPU-cccc", "GPU-aaaa", "GPU-dddd"]  # CUDA's fastest-first order
    assert cuda_indices_for_uuids(["GPU-aaaa", "GPU-bbbb"], cuda) == [2, 0]
    with pytest.raises(DeviceNotFoundError, match="GPU-eeee") as err:
        cuda_indices_for_uuids(["GPU-aaaa", "GPU-eeee"], cuda)
    assert "\n" not in str(err.value)


def test_max_memory_confines_device_map_to_the_measured_gpus() -> None:
    free = {0: 80, 1: 70, 2: 60, 3: 50}
    assert max_memory_for([2, 0], free) == {1: 0, 3: 0, 2: 60, 0: 80, "cpu": 0}


def test_device_map_off_nvml_keeps_the_model_on_the_cpu(tmp_path: Path) -> None:
    model = _model("tiny_gpt2")
    materialize(model, tmp_path, TEXTS)
    gen = load_generator(model, tmp_path, backend="simulated", seed=0, gpu_uuids=["GPU-a", "GPU-b"])
    assert gen.device == "cpu"


def test_random_weights_with_a_device_map_are_dispatched_and_generate(tmp_path: Path) -> None:
    # The multi-GPU path (model.device_map) on the CPU: accelerate places every layer where
    # max_memory allows (here only the CPU), and the seed still fixes the weights.
    model = _model("tiny_gpt2")
    materialize(model, tmp_path, TEXTS)
    placed, tok = load_model(
        model, tmp_path, device="cpu", seed=1, device_map="auto", max_memory={"cpu": 10**9}
    )
    plain, _ = load_model(model, tmp_path, device="cpu", seed=1, device_map=None, max_memory=None)
    assert {str(p.device) for p in placed.parameters()} == {"cpu"}
    assert next(placed.parameters()).detach().equal(next(plain.parameters()).detach())
    gen = Generator(placed, tok, family=model.family, device="cpu")
    assert gen.generate(
        [gen.encode("the quick brown fox")], max_new_tokens=4, fixed=True, measure_ttft=True
    ).output_tokens == [4]
