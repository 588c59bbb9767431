"""llm-energy: energy, latency and quality of LLM inference under GPU frequency caps."""

__version__ = "0.1.0"
