"""The simulated path's tokenizer (`BpeTokenizer`: tokenizer.json through `tokenizers` alone)
against transformers' `AutoTokenizer` on the same materialised files: for every model config
with random weights, on prompts rendered from the public dataset samples and on edge cases,
the same ids (with and without special tokens), decoded texts, vocabulary size and special ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import CONF, REPO
from llm_energy.config.settings import ModelConfig
from llm_energy.io.models import ModelLoadError, materialize
from llm_energy.protocols import PromptTokenizer
from llm_energy.sim.generate import BpeTokenizer, load_tokenizer
from llm_energy.workload.prompts import render_prompt, template_from_file

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
EDGE = [
    "",
    " ",
    "\n\n\t ",
    "  leading and trailing  ",
    "Hello , world . Don 't ( spaces ) before punctuation ?",  # what clean-up would change
    "<s>special</s> tokens <pad> written <pad><pad> in text </s>",
    "naïve café, Ωμέγα, 東京 タワー, 🚀🔥👩‍👩‍👧 e\u0301 \u200b\u202eright-to-left",
    "â‚¬78bn (Â£57bn)",  # the XSum sample's mojibake
    "\x00\x01 control \x7f bytes",
]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def fields() -> list[tuple[str, dict[str, str]]]:
    """(task kind, item fields) from every public sample, as the prepare stage shapes them."""
    if not SHARED.is_dir():
        pytest.skip(f"shared public dataset samples not found at {SHARED}")
    squad = json.loads((SHARED / "squad_v2" / "sample.json").read_text(encoding="utf-8"))["data"]
    wiki = (SHARED / "wikitext" / "wiki_00.txt").read_text(encoding="utf-8")
    out = [("qa", {"context": r["context"], "question": r["question"]}) for r in squad]
    xsum, cnn = (_jsonl(SHARED / p / "sample.jsonl") for p in ("xsum", "cnn_dailymail"))
    out += [("summarization", {"document": r["document"]}) for r in xsum]
    out += [("summarization", {"document": r["article"]}) for r in cnn]
    out += [("generation", {"text": r["highlights"]}) for r in cnn]
    out += [("generation", {"text": line}) for line in wiki.splitlines()[:80] if line]
    return [*out, ("generation", {"text": wiki})]  # ~80 kB: the long case


@pytest.fixture(scope="module")
def train_texts() -> list[str]:
    """What the model stage trains the random-weights tokenizer on (stages/model.py)."""
    rows = [r for p in sorted((REPO / "data" / "samples").glob("*.jsonl")) for r in _jsonl(p)]
    return [v for r in rows for v in r.values() if isinstance(v, str)]


class Fitter(PromptTokenizer):
    def __init__(self, tok: Any, chat_template: bool) -> None:
        self.tok, self.chat_template = tok, chat_template


def materialized_random(name: str, out: Path, texts: list[str]) -> ModelConfig:
    """conf/model/<name>.yaml with random weights, materialised into ``out``."""
    raw = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    model = ModelConfig.parse({**raw, "weights": "random"})
    materialize(model, out, texts)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_adapter_matches_transformers(
    name: str, tmp_path: Path, fields: list[tuple[str, dict[str, str]]], train_texts: list[str]
) -> None:
    from transformers import AutoTokenizer

    model = materialized_random(name, tmp_path, train_texts)
    ours, hf = load_tokenizer(model, tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(ours, BpeTokenizer) and len(ours) == len(hf)
    for token in (hf.pad_token, hf.eos_token, hf.bos_token):
        assert ours.backend.token_to_id(token) == hf.convert_tokens_to_ids(token)
    assert (hf.pad_token_id, hf.eos_token_id) == (0, 1)  # as the config.json materialize wrote
    assert getattr(hf, "chat_template", None) is None  # so the prompt never takes that path

    set_ = model.prompt_set
    prompts = [
        render_prompt(template_from_file((REPO / "prompts" / set_ / f"{kind}.txt").read_text()), f)
        for kind, f in fields
    ]
    texts = prompts + EDGE + [f["question"] for kind, f in fields if kind == "qa"]
    mine, theirs = Fitter(ours, model.chat_template), Fitter(hf, model.chat_template)
    for text in texts:
        for special in (True, False):
            ids = ours(text, add_special_tokens=special)["input_ids"]
            assert ids == hf(text, add_special_tokens=special)["input_ids"]
            for skip in (True, False):
                got = ours.decode(ids, skip_special_tokens=skip)
                assert got == hf.decode(ids, skip_special_tokens=skip)
        assert mine.encode(text) == theirs.encode(text)
        for n in (0, 7, 100):
            assert mine.truncate_text(text, n) == theirs.truncate_text(text, n)
    every_id = list(range(len(hf)))  # the special ids among them: what skipping drops
    for skip in (True, False):
        got = ours.decode(every_id, skip_special_tokens=skip)
        assert got == hf.decode(every_id, skip_special_tokens=skip)


def test_other_tokenizer_settings_load_through_transformers(
    tmp_path: Path, train_texts: list[str]
) -> None:
    """A setting the adapter does not serve (a chat template) leaves the load to transformers."""
    model = materialized_random("smollm2_135m", tmp_path, train_texts)
    config = tmp_path / "tokenizer_config.json"
    chat = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    config.write_text(json.dumps({**json.loads(config.read_text()), "chat_template": chat}))
    tok = load_tokenizer(model, tmp_path)
    assert not isinstance(tok, BpeTokenizer)
    ids = Fitter(tok, chat_template=True).encode("the mill")
    assert (ids[0], ids[-1]) == (tok.bos_token_id, tok.eos_token_id)


def test_a_tokenizer_folder_missing_its_file_fails_in_one_line(
    tmp_path: Path, train_texts: list[str]
) -> None:
    model = materialized_random("tiny_gpt2", tmp_path, train_texts)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(
        ModelLoadError, match=r"tokenizer.json is missing: re-run the `model` stage"
    ):
        load_tokenizer(model, tmp_path)
