"""The device layer: one abstract GPU (`base.Device`) and its NVML, CPU and multi-GPU forms, with
NVML errors translated at one boundary (`nvml_errors`). `control.open.open_device` opens one.

Importing this package imports nothing else: each module is imported from its own path.
"""
