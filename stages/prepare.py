"""Stage `prepare`: load each task's dataset, map fields, sample items -> data/prepared/<task>.jsonl."""

from __future__ import annotations

from _common import log, run_stage

from llm_energy.config.settings import Config
from llm_energy.io.files import staged_dir, write_json, write_jsonl
from llm_energy.io.loaders import load_task_items
from llm_energy.paths import ProjectPaths


def main(cfg: Config, paths: ProjectPaths) -> None:
    results = {}
    for task in cfg.tasks:  # load everything first: a bad dataset must not leave half an output
        results[task.name] = load_task_items(
            task, n_items=cfg.prepare.n_items, seed=cfg.prepare.seed, root=paths.root
        )
    summary = {}
    # Written aside and swapped in: a failed write keeps the previous data/prepared.
    with staged_dir(paths.prepared_dir) as out:
        for name, result in results.items():
            write_jsonl(out / f"{name}.jsonl", result.items)
            summary[name] = {"items": len(result.items), "problems": list(result.problems)}
            log.info(
                "%s: %d items (%d rows skipped)", name, len(result.items), len(result.problems)
            )
        write_json(out / "_summary.json", summary)


if __name__ == "__main__":
    run_stage("prepare", main)
