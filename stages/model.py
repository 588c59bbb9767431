"""Stage `model`: materialise the configured model once (GGUF -> safetensors, random config, or hub manifest)."""

from __future__ import annotations

from _common import log, run_stage

from llm_energy.config.settings import Config
from llm_energy.errors import shown
from llm_energy.io.files import iter_jsonl, staged_dir
from llm_energy.io.models import materialize
from llm_energy.paths import ProjectPaths


def _sample_texts(paths: ProjectPaths) -> list[str]:
    """Text to train the random-weights tokenizer on: every string in the embedded samples."""
    texts: list[str] = []
    for path in sorted(paths.samples_dir.glob("*.jsonl")):
        restore = f"restore it with `git checkout {shown(path)}`"
        for row in iter_jsonl(path, remedy=restore):
            texts += [v for v in row.values() if isinstance(v, str)]
    return texts


def main(cfg: Config, paths: ProjectPaths) -> None:
    texts = _sample_texts(paths)
    # Materialised aside and swapped in: a failure keeps the previous models/materialized.
    with staged_dir(paths.model_dir) as out:
        manifest = materialize(cfg.model, out, texts)
    log.info("model %s ready: %s", cfg.model.name, manifest.get("load_from"))


if __name__ == "__main__":
    run_stage("model", main)
