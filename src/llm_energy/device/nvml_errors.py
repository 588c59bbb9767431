"""NVML error codes translated into the project's one-line exceptions (what, why, what to do):
`NvmlDevice` calls every NVML function through this boundary."""

from __future__ import annotations

import pynvml

from llm_energy.device.errors import (
    DeviceError,
    DeviceNotFoundError,
    NotSupportedError,
    PermissionDeniedError,
)

NO_GPU_TODO = "Install/load the NVIDIA driver, or use gpu.backend=cpu or gpu.backend=simulated."
PERMISSION_TODO = "Run as root (sudo) or with CAP_SYS_ADMIN, or use gpu.control=observe."


def translate_nvml_error(err: Exception, asked: str, todo: str | None = None) -> DeviceError:
    """Map an NVMLError to the project's exception with a one-line asked/why/todo message."""
    code = getattr(err, "value", None)
    p = pynvml
    table: dict[int, tuple[type[DeviceError], str, str]] = {
        p.NVML_ERROR_LIBRARY_NOT_FOUND: (
            DeviceNotFoundError,
            "the NVML library (libnvidia-ml.so.1) was not found, so no NVIDIA driver is installed here",
            NO_GPU_TODO,
        ),
        p.NVML_ERROR_DRIVER_NOT_LOADED: (
            DeviceNotFoundError,
            "the NVIDIA kernel driver is not loaded",
            NO_GPU_TODO,
        ),
        p.NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
            DeviceNotFoundError,
            "the NVML library and the loaded kernel driver have different versions",
            "Reboot or reload the nvidia kernel module after the driver update.",
        ),
        p.NVML_ERROR_NOT_FOUND: (
            DeviceNotFoundError,
            "NVML found no such GPU",
            "Check gpu.index and nvidia-smi -L.",
        ),
        p.NVML_ERROR_GPU_IS_LOST: (
            DeviceNotFoundError,
            "the GPU fell off the bus (NVML: GPU is lost)",
            "Check dmesg / nvidia-smi; the host may need a reboot.",
        ),
        p.NVML_ERROR_NO_PERMISSION: (
            PermissionDeniedError,
            "NVML reports insufficient permissions",
            PERMISSION_TODO,
        ),
        p.NVML_ERROR_NOT_SUPPORTED: (
            NotSupportedError,
            "this GPU or driver does not support it",
            "Use gpu.control=observe (or gpu.freq=null) on this GPU, or a GPU/driver that supports it.",
        ),
        p.NVML_ERROR_FUNCTION_NOT_FOUND: (
            NotSupportedError,
            "the installed driver's NVML lacks this function",
            "Update the NVIDIA driver, or use gpu.control=observe.",
        ),
    }
    cls, why, default_todo = table.get(
        code,  # type: ignore[arg-type]
        (DeviceError, f"NVML error {code}: {err}", "Check nvidia-smi and the driver logs."),
    )
    return cls(asked, why, todo if todo is not None else default_todo)
