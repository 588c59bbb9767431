"""Config schema: every group option composes and validates; bad values give one clear line."""

from __future__ import annotations

import copy

import pytest
import yaml

from helpers import REPO, compose, option_names
from llm_energy.config import ConfigError, apply_overrides, load_config


@pytest.fixture(scope="module")
def base() -> dict:
    return compose()


def test_committed_params_match_composition_of_conf() -> None:
    """`dvc repro` reads params.yaml as committed; it must not drift from conf/."""
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == compose(), "params.yaml drifted from conf/: run `llm-energy compose`"


@pytest.mark.parametrize("group", ["model", "gpu", "sweep", "experiment", "task"])
def test_every_group_option_composes_and_validates(group: str) -> None:
    options = option_names(group)
    assert options, group
    for option in options:
        override = f"task=[{option}]" if group == "task" else f"{group}={option}"
        cfg = load_config(compose(override))
        if group == "model":
            assert cfg.model.name
        if group == "task":
            assert [t.name for t in cfg.tasks] == [option]


def test_default_is_embedded_run(base: dict) -> None:
    cfg = load_config(base)
    assert cfg.model.source == "gguf" and cfg.model.weights == "pretrained"
    assert {t.kind for t in cfg.tasks} == {"generation", "qa", "summarization"}
    assert cfg.gpu.backend == "auto" and cfg.gpu.freq is None
    assert cfg.prepare.n_items >= 12


def test_paper_experiment_has_six_models_available_and_hub_tasks() -> None:
    cfg = load_config(compose("experiment=paper"))
    assert {t.dataset["path"] for t in cfg.tasks} == {
        "Salesforce/wikitext",
        "rajpurkar/squad_v2",
        "EdinburghNLP/xsum",
        "abisee/cnn_dailymail",
    }
    assert None in cfg.sweep.freqs_mhz and len(cfg.sweep.freqs_mhz) > 2
    hub_ids = {
        load_config(compose("experiment=paper", f"model={m}")).model.hub_id
        for m in ["falcon_7b", "mistral_7b", "t5_3b", "gpt2", "gpt_j_6b", "gpt_neo_2_7b"]
    }
    assert hub_ids == {
        "tiiuae/falcon-7b",
        "mistralai/Mistral-7B-v0.1",
        "google-t5/t5-3b",
        "openai-community/gpt2",
        "EleutherAI/gpt-j-6b",
        "EleutherAI/gpt-neo-2.7B",
    }


def test_gpu_freq_override_is_validated(base: dict) -> None:
    assert load_config(compose("gpu.freq=1200")).gpu.freq == 1200


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("gpu.freq", -5, "gpu.freq = -5"),
        ("gpu.freq", "fast", "gpu.freq = 'fast'"),
        ("gpu.freq", 1200.5, "MHz"),
        ("gpu.backend", "tpu", "auto|nvml|cpu|simulated"),
        ("gpu.control", "force", "lock|observe"),
        ("infer.batch_size", 0, "infer.batch_size = 0"),
        ("infer.output_tokens", 9000, "context of 8192"),
        ("model.family", "diffusion", "causal|seq2seq"),
        ("stats.alpha", 1.5, "strictly between 0 and 1"),
        ("prepare.n_items", 0, "prepare.n_items"),
    ],
)
def test_bad_values_name_key_value_and_allowed(
    base: dict, key: str, value: object, fragment: str
) -> None:
    params = copy.deepcopy(base)
    section, name = key.split(".")
    params[section][name] = value
    with pytest.raises(ConfigError) as err:
        load_config(params)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert message.startswith(f"params: {err.value.key}")


def test_unknown_key_is_rejected(base: dict) -> None:
    params = copy.deepcopy(base)
    params["gpu"]["freqq"] = 1200
    with pytest.raises(ConfigError, match=r"gpu\.freqq .*unknown key"):
        load_config(params)


def test_unknown_random_architecture_is_rejected(base: dict) -> None:
    params = copy.deepcopy(base)
    params["model"]["weights"] = "random"
    params["model"]["arch"] = {"model_type": "mamba9"}
    with pytest.raises(ConfigError, match=r"model\.arch\.model_type"):
        load_config(params)


@pytest.mark.parametrize("prompt_set", ["../conf", "a/b", "", None, 3])
def test_prompt_set_is_a_bare_folder_name(base: dict, prompt_set: object) -> None:
    params = copy.deepcopy(base)
    params["model"]["prompt_set"] = prompt_set
    with pytest.raises(ConfigError, match=r"model\.prompt_set .*folder under prompts/"):
        load_config(params)


def test_inline_prompt_templates_say_where_they_went(base: dict) -> None:
    params = copy.deepcopy(base)
    params["model"]["prompts"] = {"qa": "{context}\n\nQuestion: {question}\nAnswer:"}
    with pytest.raises(ConfigError, match=r"model\.prompts .*prompts/<set>/<task kind>\.txt"):
        load_config(params)


def _leaves(node: object, key: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{key}.{k}".lstrip("."))]
    return [(key, node)]


@pytest.mark.parametrize("model", option_names("model"))
def test_params_stay_short_scalars_for_dvc_exp_show(model: str) -> None:
    # Every leaf is a `dvc exp show` column: long or multi-line texts belong in files.
    for key, value in _leaves(compose(f"model={model}")):
        text = str(value)
        assert "\n" not in text and len(text) <= 60, f"{key} is not a short scalar: {text!r}"


def test_apply_overrides_parses_yaml_values_and_refuses_typos(base: dict) -> None:
    out = apply_overrides(
        base,
        ["gpu.freq=1200", "gpu.backend=simulated", "sweep.freqs_mhz=[900, null]", "+extra.k=1"],
    )
    assert out["gpu"]["freq"] == 1200 and out["gpu"]["backend"] == "simulated"
    assert out["sweep"]["freqs_mhz"] == [900, None] and out["extra"] == {"k": 1}
    assert base["gpu"]["freq"] is None  # input untouched
    with pytest.raises(ConfigError, match="no such key"):
        apply_overrides(base, ["gpu.freqq=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(base, ["gpu.freq"])
