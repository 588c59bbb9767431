"""Running a study: the plan, the generator and torch device, the runner, warm-up, provenance."""
