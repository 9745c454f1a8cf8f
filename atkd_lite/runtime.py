"""Where and how code runs, by its first name: four modules hold it now.

- :mod:`atkd_lite.device` — device, seeds, precision (autocast), compiling, model modes,
  the progress bar;
- :mod:`atkd_lite.files` — atomic writes, output-path checks, temporary-file sweeping,
  tensor digests, file locks;
- :mod:`atkd_lite.checks` — argument checks whose messages say what to do;
- :mod:`atkd_lite.outputs` — the output adapter
  (:func:`~atkd_lite.outputs.model_logits`), wrappers.

Kept so that ``from atkd_lite.runtime import ...`` (the book, your own code) goes on
working; the package's own modules import from the four.
"""

from atkd_lite.checks import (  # noqa: F401 (re-exported)
    check_images,
    check_int,
    check_model_input,
    check_number,
    trusted_inputs,
)
from atkd_lite.device import (  # noqa: F401 (re-exported)
    AMP_DTYPE_ENV,
    COMPILE_MODES,
    at_least_float32,
    autocast_context,
    autocast_dtype,
    check_compile_mode,
    compile_function,
    cuda_graph_mode,
    eval_mode,
    float32_math,
    frozen,
    get_device,
    progress_bar,
    seed_everything,
    synchronize,
)
from atkd_lite.files import (  # noqa: F401 (re-exported)
    FileLock,
    LockHeldError,
    atomic_write,
    check_output_dir,
    check_output_file,
    sweep_temp_files,
    tensor_digest,
)
from atkd_lite.outputs import (  # noqa: F401 (re-exported)
    LOGITS_KEYS,
    LogitsOnly,
    model_logits,
    unwrap_model,
)

__all__ = [
    "AMP_DTYPE_ENV",
    "COMPILE_MODES",
    "FileLock",
    "LOGITS_KEYS",
    "LockHeldError",
    "LogitsOnly",
    "at_least_float32",
    "atomic_write",
    "autocast_context",
    "autocast_dtype",
    "check_compile_mode",
    "check_images",
    "check_int",
    "check_model_input",
    "check_number",
    "check_output_dir",
    "check_output_file",
    "compile_function",
    "cuda_graph_mode",
    "eval_mode",
    "float32_math",
    "frozen",
    "get_device",
    "model_logits",
    "progress_bar",
    "seed_everything",
    "sweep_temp_files",
    "synchronize",
    "tensor_digest",
    "trusted_inputs",
    "unwrap_model",
]
