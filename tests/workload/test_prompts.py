from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from helpers import REPO, compose, option_names
from llm_energy.config.settings import load_config
from llm_energy.errors import InputFileError
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import project_paths
from llm_energy.workload.prompts import PromptError, fit_prompt, render_prompt


def words(text: str) -> int:
    return len(text.split())


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def test_render_names_missing_fields() -> None:
    assert render_prompt("Q: {question}", {"question": "why?", "x": "y"}) == "Q: why?"
    with pytest.raises(PromptError, match="question"):
        render_prompt("Q: {question}", {"context": "c"})


def test_fit_trims_main_field_only_and_records_reason() -> None:
    fields = {"context": " ".join(f"w{i}" for i in range(100)), "question": "what is w3 ?"}
    fitted = fit_prompt(
        "{context} Q: {question}",
        fields,
        "qa",
        count_tokens=words,
        truncate_text=first_words,
        target_tokens=20,
        context_limit_tokens=1000,
    )
    assert fitted.truncated and fitted.reason == "input_tokens target"
    assert fitted.tokens <= 20 and fitted.text.endswith("Q: what is w3 ?")
    assert fitted.tokens == 20  # 16 context words + "Q:" + 3 question words


def test_fit_leaves_short_prompts_alone_and_truncates_to_context() -> None:
    fields = {"document": "a b c"}
    assert not fit_prompt(
        "{document}",
        fields,
        "summarization",
        count_tokens=words,
        truncate_text=first_words,
        target_tokens=None,
        context_limit_tokens=10,
    ).truncated
    long_fields = {"document": "x " * 50}
    fitted = fit_prompt(
        "Sum: {document}",
        long_fields,
        "summarization",
        count_tokens=words,
        truncate_text=first_words,
        target_tokens=None,
        context_limit_tokens=10,
    )
    assert fitted.truncated and fitted.reason == "model context" and fitted.tokens == 10


def test_fit_refuses_when_instructions_alone_exceed_limit() -> None:
    with pytest.raises(PromptError, match="already takes"):
        fit_prompt(
            "a b c d e {text}",
            {"text": "x y z"},
            "generation",
            count_tokens=words,
            truncate_text=first_words,
            target_tokens=3,
            context_limit_tokens=100,
        )


# ------------------------------------------------------------------ templates from prompts/

# The inline templates of conf/model/*.yaml before they moved to files (git show
# 727c4c0:conf/model/<m>.yaml): the default run's prompts, hence its numbers, must not change.
PLAIN = {
    "generation": "{text}",
    "qa": "{context}\n\nQuestion: {question}\nAnswer:",
    "summarization": "{document}\n\nTL;DR:",
}
OLD_TEMPLATES = {
    "smollm2_135m": {
        "generation": "Continue this text.\n\n{text}",
        "qa": 'Answer with a few words copied from the context, or "unanswerable" if the context'
        " does not say.\n\nContext: The old mill by the river was painted green in 1870.\n"
        "Question: What colour is the mill?\nAnswer: green\n\n"
        "Context: The old mill by the river was painted green in 1870.\n"
        "Question: Who owns the mill?\nAnswer: unanswerable\n\n"
        "Context: {context}\nQuestion: {question}\nAnswer:",
        "summarization": "Summarize the following article in one sentence.\n\n{document}",
    },
    "t5_3b": {
        "generation": "{text}",
        "qa": "question: {question} context: {context}",
        "summarization": "summarize: {document}",
    },
    "tiny_t5": {
        "generation": "{text}",
        "qa": "question: {question} context: {context}",
        "summarization": "summarize: {document}",
    },
    **{
        m: PLAIN
        for m in (
            "falcon_7b",
            "gpt2",
            "gpt_j_6b",
            "gpt_neo_2_7b",
            "mistral_7b",
            "tiny_falcon",
            "tiny_gpt2",
            "tiny_gpt_neo",
            "tiny_gptj",
            "tiny_llama",
            "tiny_mistral",
        )
    },
}
# sha256 of the default model's (smollm2_135m) templates joined in kind order, a second witness.
DEFAULT_DIGEST = "c0e4c7aa913fbcc3db5b5d1dcfa3d59f584217404e3ca87a14e35992ae8d3525"


def _templates(root: Path, *overrides: str) -> Mapping[str, str]:
    return read_prompt_templates(load_config(compose(*overrides)), project_paths(root))


def test_every_model_reads_byte_identical_templates_from_its_prompt_set() -> None:
    assert sorted(OLD_TEMPLATES) == option_names("model")
    for model, old in OLD_TEMPLATES.items():
        assert _templates(REPO, f"model={model}") == old, model
    default = _templates(REPO)
    joined = "\0".join(default[k] for k in sorted(default)).encode()
    assert hashlib.sha256(joined).hexdigest() == DEFAULT_DIGEST


def test_only_the_configured_task_kinds_are_read(tmp_path: Path) -> None:
    (tmp_path / "prompts/smollm2").mkdir(parents=True)
    (tmp_path / "prompts/smollm2/qa.txt").write_bytes(b"{context} {question}")  # no final newline
    assert _templates(tmp_path, "task=[qa]") == {"qa": "{context} {question}"}


def _error_line(tmp_path: Path, *overrides: str) -> str:
    with pytest.raises(InputFileError) as err:
        _templates(tmp_path, "task=[qa]", *overrides)
    line = str(err.value)
    assert "\n" not in line and line.startswith(str(tmp_path / "prompts/smollm2/qa.txt"))
    return line


def test_missing_prompt_file_is_one_line_naming_it(tmp_path: Path) -> None:
    line = _error_line(tmp_path)
    assert "prompt template not found" in line and "model.prompt_set" in line


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{context} {question", "not a valid template"),
        (b"{context} {answer}", "uses {answer}, but qa items only have {context}, {question}"),
        (b"Q: {question}", "does not use {context}"),
        (b"\xff{context}", "not UTF-8"),
    ],
)
def test_unusable_prompt_file_is_one_line_naming_it(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    (tmp_path / "prompts/smollm2").mkdir(parents=True)
    (tmp_path / "prompts/smollm2/qa.txt").write_bytes(content)
    assert fragment in _error_line(tmp_path)


def test_validate_stage_refuses_a_missing_template_before_writing_its_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    spec = importlib.util.spec_from_file_location("stage_validate", REPO / "stages/validate.py")
    assert spec is not None and spec.loader is not None
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose("gpu.backend=simulated")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_ENERGY_ROOT", raising=False)
    with pytest.raises(SystemExit) as exit_:
        stage.run_stage("validate", stage.main, argv=[])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "prompts/smollm2/" in err and "prompt template not found" in err
    assert not (tmp_path / "data/validated.txt").exists()
