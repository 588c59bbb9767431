"""Prompt rendering and input-length control (pure: the tokenizer comes in as callables). Length
targets trim the main text, not the instruction or question: a trimmed QA prompt still asks it."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The field that carries the bulk of each task kind's prompt; it is what gets trimmed.
MAIN_FIELD = {"generation": "text", "qa": "context", "summarization": "document"}
# The fields a prepared item of each kind carries (datasets.py), i.e. what a template may use.
ITEM_FIELDS = {
    "generation": ("text",),
    "qa": ("context", "question"),
    "summarization": ("document",),
}


class PromptError(ValueError):
    pass


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def template_from_file(text: str) -> str:
    """A template file's text minus one final newline: editors add it, the prompt never had it."""
    return text[:-1] if text.endswith("\n") else text


def template_problem(template: str, kind: str) -> str | None:
    """Why `template` cannot serve task kind `kind`, or None: checked before anything runs."""
    try:
        names = template_fields(template)
    except ValueError as exc:  # a lone { or }: literal braces are written {{ and }}
        return f"not a valid template ({exc}; write literal braces as {{{{ and }}}})"
    unknown = sorted(set(names) - set(ITEM_FIELDS[kind]))
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in ITEM_FIELDS[kind])
        return f"uses {{{unknown[0]}}}, but {kind} items only have {allowed}"
    if MAIN_FIELD[kind] not in names:
        return f"does not use {{{MAIN_FIELD[kind]}}}, the {kind} item's main text"
    return None


def render_prompt(template: str, fields: Mapping[str, str]) -> str:
    missing = [name for name in template_fields(template) if name not in fields]
    if missing:
        raise PromptError(
            f"prompt template needs field(s) {missing} but the item has {sorted(fields)}"
        )
    return template.format(**{k: fields[k] for k in template_fields(template)})


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    tokens: int
    truncated: bool
    reason: str  # "" | "input_tokens target" | "model context"


def fit_prompt(
    template: str,
    fields: Mapping[str, str],
    kind: str,
    *,
    count_tokens: Callable[[str], int],
    truncate_text: Callable[[str, int], str],
    target_tokens: int | None,
    context_limit_tokens: int,
) -> FittedPrompt:
    """Render a prompt no longer than min(target, context limit) tokens by trimming the main
    field; `count_tokens` counts what the model sees (chat template included)."""
    if context_limit_tokens < 1:
        raise PromptError(f"no room for the prompt: context limit is {context_limit_tokens} tokens")
    by_target = target_tokens is not None and target_tokens <= context_limit_tokens
    limit = target_tokens if by_target else context_limit_tokens
    reason = "input_tokens target" if by_target else "model context"
    prompt = render_prompt(template, fields)
    n = count_tokens(prompt)
    if n <= limit:
        return FittedPrompt(prompt, n, False, "")
    main = MAIN_FIELD[kind]
    body = fields.get(main, "")
    overhead = count_tokens(render_prompt(template, {**fields, main: ""}))
    budget = limit - overhead
    if budget < 1:
        raise PromptError(
            f"the prompt without its {main} already takes {overhead} tokens, over the limit of {limit} ({reason})"
        )
    # Token counts are not additive across the join, so shrink until it fits (a few iterations).
    for _ in range(32):
        trimmed = truncate_text(body, budget)
        prompt = render_prompt(template, {**fields, main: trimmed})
        n = count_tokens(prompt)
        if n <= limit:
            return FittedPrompt(prompt, n, True, reason)
        budget -= max(1, n - limit)
        if budget < 1:
            break
    raise PromptError(f"could not fit the prompt into {limit} tokens ({reason})")
