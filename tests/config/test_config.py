"""Config schema: every group option composes and validates; bad values give one clear line."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from helpers import REPO, compose, option_names
from llm_energy.config import sections as config_sections
from llm_energy.config import tasks as config_tasks
from llm_energy.config.schema import optional
from llm_energy.config.settings import ConfigError, apply_overrides, load_config


@pytest.fixture(scope="module")
def base() -> dict:
    return compose()


def _schema_classes() -> list[type]:
    modules = (config_sections, config_tasks)
    return [c for m in modules for c in vars(m).values() if dataclasses.is_dataclass(c)]


@pytest.mark.parametrize("cls", _schema_classes(), ids=lambda c: c.__name__)
def test_every_schema_field_has_a_check_and_no_default(cls: type) -> None:
    # Every key is checked and none has a default: values come from conf/ only.
    for f in dataclasses.fields(cls):
        checks = [f.metadata.get("check"), *f.metadata.get("table", {}).values()]
        assert any(checks) and all(callable(c) for c in checks if c is not None), f.name
        assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def test_a_shadowed_check_name_fails_at_import() -> None:
    # In a class body, `mem_freq = checked(optional(freq))` after a field `freq` sees the Field.
    with pytest.raises(TypeError, match="must be callable"):
        optional(dataclasses.field())


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
    assert {t.dataset.path for t in cfg.tasks} == {
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


def _set(params: dict, key: str, value: object) -> None:
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


# One bad value per check in the schema (config_schema / config_sections / config_tasks).
BAD_VALUES = [
    ("gpu.freq", -5, "gpu.freq = -5"),
    ("gpu.freq", "fast", "gpu.freq = 'fast'"),
    ("gpu.freq", 1200.5, "MHz"),
    ("gpu.mem_freq", 9000, "1..5000"),
    ("gpu.backend", "tpu", "auto|nvml|cpu|simulated"),
    ("gpu.control", "force", "lock|observe|slurm"),
    ("gpu.index", -1, "NVML device index"),
    ("gpu.index", "first", "or auto"),
    ("gpu.wait_for_gpu_s", -1, "at least 0.0"),
    ("gpu.wait_for_gpu_s", None, "a number"),
    ("gpu.on_other_processes", "kill", "warn|refuse"),
    ("gpu.idle_samples", 1, "at least 2 (sub-readings per idle reading"),
    ("gpu.idle_samples", 2.5, "at least 2"),
    ("gpu.min_window_periods", 0.5, "at least 1.0"),
    ("gpu.tick_align", "yes", "true or false"),
    ("gpu.max_window_repeats", 0, "at least 1"),
    ("gpu.state_dir", "", "non-empty string"),
    ("gpu.simulated_gpu", "v100", "h200|h100|a100"),
    ("gpu.simulated_count", 65, "at most 64"),
    ("gpu.simulated_alpha", 1.5, "at most 1.0"),
    ("gpu.power_timeline_period_s", 0.05, "at least 0.1"),
    ("infer.batch_size", 0, "infer.batch_size = 0"),
    ("infer.batch_size", True, "an integer"),
    ("infer.output_tokens", 9000, "context of 8192"),
    ("infer.input_tokens", 8192, "context of 8192"),
    ("infer.engine", "vllm", "eager|static"),
    ("infer.output_mode", "eos", "fixed|natural"),
    ("infer.warmup_tolerance", 2, "at most 1.0"),
    ("infer.max_items", 0, "at least 1"),
    ("infer.phases", "yes", "true or false"),
    ("infer.output_tokens", 1, "no decode to split"),
    ("sweep.output_tokens", [16, 1], "no decode to split"),
    ("model.family", "diffusion", "causal|seq2seq"),
    ("model.source", "s3", "gguf|hub|local"),
    ("model.weights", "zeros", "pretrained|random"),
    ("model.dtype", "int8", "float32|float16|bfloat16|auto"),
    ("model.params_m", -1, "at least 0.0"),
    ("model.max_context_tokens", 4, "at least 8"),
    ("model.chat_template", 1, "true or false"),
    ("model.name", "  ", "non-empty string"),
    ("model.arch", [1], "transformers config fields"),
    ("model.device_map", "balanced", "list of at least 2 distinct NVML indices"),
    ("model.device_map", [0], "at least 2"),
    ("model.device_map", [0, 0], "distinct"),
    ("model.device_map", [0, -1], "model.device_map[1] = -1"),
    ("model.device_map", 1, "null (one GPU), auto"),
    ("sweep.freqs_mhz", [900, 0], "sweep.freqs_mhz[1] = 0"),
    ("sweep.freqs_mhz", None, "list of clock points"),
    ("sweep.output_tokens", [16, 9000], "context of 8192"),
    ("sweep.batch_sizes", [0], "sweep.batch_sizes[0]"),
    ("sweep.engines", ["jax"], "eager|static"),
    ("sweep.order", "sorted", "interleave|random"),
    ("meta.seed", -1, "at least 0"),
    ("meta.experiment", 3, "non-empty string"),
    ("emissions.country_iso_code", "AT", "alpha-3"),
    ("emissions.enabled", "no", "true or false"),
    ("aggregate.ci_level", 0.3, "at least 0.5"),
    ("stats.alpha", 1.5, "strictly between 0 and 1"),
    ("stats.alpha", 0, "strictly between 0 and 1"),
    ("stats.min_samples", 1, "at least 2"),
    ("stats.latency_budget_pct", -1, "at least 0.0"),
    ("plots.dpi", 601, "at most 600"),
    ("prepare.n_items", 0, "prepare.n_items"),
    ("task.qa.output_tokens", 0, "at least 1"),
    ("task.qa.dataset.path", None, "non-empty string"),
    ("task.qa.dataset.name", [], "a string or null"),
    ("task.qa.fields.answers", 7, "dataset column"),
    ("task.qa.options.check_spans", "no", "true or false"),
    ("task.generation.options.prompt_words", 0, "fraction in (0, 1)"),
    ("task.generation.options.doc_markup", "html", "wikiextractor"),
]


@pytest.mark.parametrize(("key", "value", "fragment"), BAD_VALUES)
def test_bad_values_name_key_value_and_allowed(
    base: dict, key: str, value: object, fragment: str
) -> None:
    params = copy.deepcopy(base)
    _set(params, key, value)
    with pytest.raises(ConfigError) as err:
        load_config(params)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert message.startswith(f"params: {err.value.key} = {err.value.value!r} is not allowed: ")
    assert err.value.key.startswith(key.split("[")[0].rsplit(".", 1)[0])


@pytest.mark.parametrize(
    "key",
    [
        "gpu.wait_for_gpu_s",
        "gpu.control",
        "model.device_map",
        "infer.engine",
        "sweep.freqs_mhz",
        "emissions.region",
        "task.qa.fields.id",
        "task.qa.dataset.revision",
        "task.generation.options.reference_words",
        "task.summarization.output_mode",
    ],
)
def test_a_missing_key_fails_naming_it(base: dict, key: str) -> None:
    """No defaults in code: a key that params.yaml lacks is an error, not a silent value."""
    params = copy.deepcopy(base)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    del node[last]
    with pytest.raises(ConfigError) as err:
        load_config(params)
    assert err.value.key == key
    assert str(err.value).startswith(f"params: {key} = (missing) is not allowed: ")
    assert "llm-energy compose" in str(err.value)


@pytest.mark.parametrize("section", ["meta", "gpu", "stats", "plots"])
def test_a_missing_section_fails_naming_it(base: dict, section: str) -> None:
    params = copy.deepcopy(base)
    del params[section]
    with pytest.raises(ConfigError, match=rf"^params: {section} = None .*section missing"):
        load_config(params)


def test_no_tasks_is_refused(base: dict) -> None:
    params = copy.deepcopy(base)
    params["task"] = {}
    with pytest.raises(ConfigError, match=r"^params: task = \{\} .*at least one task"):
        load_config(params)


def test_new_scale_out_keys(base: dict) -> None:
    cfg = load_config(base)
    assert cfg.model.device_map is None and cfg.gpu.wait_for_gpu_s == 0.0
    assert cfg.gpu.control == "lock"
    assert load_config(compose("model.device_map=auto")).model.device_map == "auto"
    assert load_config(compose("model.device_map=[2,0,1]")).model.device_map == (2, 0, 1)
    assert load_config(compose("gpu.wait_for_gpu_s=30")).gpu.wait_for_gpu_s == 30.0
    assert load_config(compose("gpu.control=slurm")).gpu.control == "slurm"


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"source": "hub", "weights": "pretrained", "hub_id": None}, "model.hub_id"),
        ({"source": "gguf", "weights": "pretrained", "gguf_file": None}, "model.gguf_file"),
        ({"source": "gguf", "weights": "pretrained", "gguf_package": None}, "model.gguf_package"),
        ({"source": "local", "path": None}, "model.path"),
        ({"weights": "random", "arch": {}}, "model.arch.model_type"),
    ],
)
def test_model_source_rules(base: dict, patch: dict, key: str) -> None:
    params = copy.deepcopy(base)
    params["model"].update(patch)
    with pytest.raises(ConfigError) as err:
        load_config(params)
    assert err.value.key == key


def test_model_source_rules_allow_what_is_not_needed(base: dict) -> None:
    params = copy.deepcopy(base)
    params["model"].update(source="hub", weights="random", hub_id=None, gguf_file=None)
    assert load_config(params).model.hub_id is None


def test_unknown_key_is_rejected(base: dict) -> None:
    params = copy.deepcopy(base)
    params["gpu"]["freqq"] = 1200
    with pytest.raises(
        ConfigError, match=r"gpu\.freqq .*unknown key; did you mean freq\? allowed keys: backend, "
    ):
        load_config(params)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("gpuu", r"^params: params\.gpuu = 1 .*allowed keys: meta, model, task, gpu"),
        ("task.qa.options.prompt_wrds", r"task\.qa\.options\.prompt_wrds .*allowed keys: check"),
        ("task.generation.options.prompt_wrds", r"allowed keys: prompt_words, reference_words"),
        ("model.arch_", r"model\.arch_ = 1 .*unknown key"),
        ("sweep.freqs", r"sweep\.freqs = 1 .*unknown key"),
    ],
)
def test_unknown_keys_are_rejected_everywhere(base: dict, key: str, match: str) -> None:
    params = copy.deepcopy(base)
    _set(params, key, 1)
    with pytest.raises(ConfigError, match=match):
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


@pytest.mark.parametrize("point", [0.5, "50%", "auto:4", None, 1410])
def test_clock_points_relative_to_the_device_are_accepted(base: dict, point: object) -> None:
    params = copy.deepcopy(base)
    params["sweep"]["freqs_mhz"] = [None, point]
    assert load_config(params).sweep.freqs_mhz == (None, point)


@pytest.mark.parametrize("point", ["fast", 1.5, "150%", "auto:0", True])
def test_malformed_clock_points_are_one_line(base: dict, point: object) -> None:
    params = copy.deepcopy(base)
    params["sweep"]["freqs_mhz"] = [point]
    with pytest.raises(ConfigError, match=r"sweep\.freqs_mhz\[0\]") as ei:
        load_config(params)
    assert "\n" not in str(ei.value)


def test_one_output_token_is_allowed_without_a_phase_split() -> None:
    cfg = load_config(compose("infer.output_tokens=1", "infer.phases=false"))
    assert cfg.infer.output_tokens == 1 and not cfg.infer.phases
