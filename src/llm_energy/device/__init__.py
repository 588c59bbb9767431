"""The device layer (docs/architecture.md). Importing this package imports nothing else: each
module is imported from its own path."""
