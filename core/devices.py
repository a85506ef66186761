"""Where models run and in what precision: the one place every command's `--device` and `--dtype` resolve.

    device = pick_device(args.device)               # "cuda" when present, else "cpu"; --device cuda
                                                    # without CUDA is a one-line UserError
    dtype = pick_dtype(args.dtype, device)          # inference: fp16 on CUDA, fp32 on the CPU
    dtype = pick_dtype(args.dtype, device, training=True)   # training autocast: bf16 (else fp16) on CUDA

Inference on a GPU runs in half precision (what makes SD1.5 at 512x512 fit in 12 GB); CPUs have no
fast fp16 kernels, so they stay in fp32. Training keeps fp32 weights and autocasts the forward pass.
"""

from __future__ import annotations

from storyreel.core.errors import UserError

DEVICE_HELP = "where models run: cpu, cuda or cuda:N (default: cuda when present, else cpu)"
DTYPE_HELP = "model precision: fp32, fp16 or bf16 (default: fp16 on a GPU, fp32 on the CPU)"
DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_device(name: str | None = None):
    """The torch.device for `--device` (None: CUDA when present, else the CPU)."""
    import torch

    if name is None:
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not cuda_available():
            raise UserError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                            f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise UserError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    return device


def pick_dtype(name: str | None, device, *, training: bool = False):
    """The torch dtype for `--dtype` on `device` (see the module docstring for the defaults).

    For training it is the autocast dtype; fp32 means no autocast.
    """
    import torch

    device = pick_device(device) if device is None or isinstance(device, str) else device
    if name is not None:
        if name.lower() not in DTYPES:
            raise UserError(f"--dtype {name!r}: expected fp32, fp16 or bf16")
        dtype = getattr(torch, DTYPES[name.lower()])
        if device.type == "cpu" and dtype == torch.float16 and not training:
            raise UserError("--dtype fp16 needs a GPU (the CPU has no fp16 kernels for these models); "
                            "use fp32 or bf16 on the CPU")
        return dtype
    if device.type != "cuda":
        return torch.float32
    if training:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


def device_and_dtype(args, *, training: bool = False):
    """(device, dtype) from a parsed command's --device/--dtype (either may be absent: its default)."""
    device = pick_device(getattr(args, "device", None))
    return device, pick_dtype(getattr(args, "dtype", None), device, training=training)
