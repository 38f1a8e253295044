# Type stubs for the compiled module oat_edge._core (built from cpp/python/).
# Private backend of oat_edge.Policy: arrays must be C-contiguous; every rule about the values is the
# C++ core's (InputError). Options left None take the core's defaults (RuntimeOptions, ActOptions).
import numpy as np
import numpy.typing as npt

__version__: str

class Policy:
    def __init__(
        self,
        path: str,
        *,
        ort_library: str = ...,
        device: str = ...,
        threads: int = ...,
        allow_cpu_fallback: bool = ...,
        max_batch: int = ...,
        batch_limit: int = ...,
        spin_wait: bool = ...,
        optimized_model_dir: str = ...,
        trt_cache_dir: str = ...,
        trt_fp16: bool = ...,
        warmup: bool = ...,
    ) -> None: ...
    # obs: one float32 array, or {name: C-contiguous array} for a named-input bundle (info()["inputs"])
    def act(
        self,
        obs: npt.NDArray[np.float32] | dict[str, npt.NDArray[np.float32] | npt.NDArray[np.uint8]],
        *,
        max_tokens: int | None = None,
        min_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        latency_budget_ms: float | None = None,
    ) -> tuple[npt.NDArray[np.float32], dict[str, float]]: ...
    def generate(
        self,
        obs: npt.NDArray[np.float32] | dict[str, npt.NDArray[np.float32] | npt.NDArray[np.uint8]],
        *,
        max_tokens: int | None = None,
        min_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        latency_budget_ms: float | None = None,
    ) -> tuple[npt.NDArray[np.int64], dict[str, float]]: ...
    def check_options(
        self,
        *,
        max_tokens: int | None = None,
        min_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        latency_budget_ms: float | None = None,
    ) -> None: ...
    def detokenize(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def tokenize(self, actions: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...
    @property
    def info(self) -> dict[str, object]: ...  # oat_edge.policy_info.PolicyInfo.from_core reads it
    # (its "observation" is the spec's JSON text or None, "control_hz" a float or None)
    @property
    def step_runs(self) -> int: ...

def fsq_ids_to_codes(levels: list[int], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
def prepare_realtime_memory(lock_memory: bool = True) -> dict[str, object]: ...
def thread_faults() -> dict[str, int]: ...
