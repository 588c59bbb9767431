from __future__ import annotations

import pytest

from llm_energy.prompts import PromptError, fit_prompt, render_prompt


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
