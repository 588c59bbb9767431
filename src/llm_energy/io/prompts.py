"""Reads the prompt templates that `model.prompt_set` names (prompts/<set>/<task kind>.txt).
Templates live in files, not in params, so that `dvc exp show` stays a table of scalars."""

from __future__ import annotations

from collections.abc import Mapping

from llm_energy.config.settings import Config
from llm_energy.errors import InputFileError
from llm_energy.paths import ProjectPaths
from llm_energy.workload.prompts import template_from_file, template_problem


def read_prompt_templates(cfg: Config, paths: ProjectPaths) -> Mapping[str, str]:
    """{task kind: template} for every kind among cfg.tasks, read byte for byte (UTF-8)."""
    prompt_set = cfg.model.prompt_set
    remedy = f"create it, or set model.prompt_set (model {cfg.model.name} uses {prompt_set!r})"
    if paths.prompts_dir.is_dir():
        sets = sorted(p.name for p in paths.prompts_dir.iterdir() if p.is_dir())
        remedy += (" to one of: " + ", ".join(sets)) if sets else ""
    templates: dict[str, str] = {}
    for kind in sorted({task.kind for task in cfg.tasks}):
        path = paths.prompt_file(prompt_set, kind)
        try:
            # Bytes, not text mode: no newline translation, the prompt is exactly the file.
            text = template_from_file(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise InputFileError(path, "prompt template not found", remedy) from None
        except UnicodeDecodeError as exc:
            raise InputFileError(
                path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8"
            ) from None
        except OSError as exc:
            raise InputFileError(
                path, f"cannot read the prompt template ({exc.strerror})", remedy
            ) from None
        problem = template_problem(text, kind)
        if problem:
            raise InputFileError(path, f"prompt template {problem}", "fix the template")
        templates[kind] = text
    return templates
