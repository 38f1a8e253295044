# Type stubs for the compiled module oat_edge._core (cpp/python/bindings.cpp).
# Private backend of oat_edge.Policy: arrays must already be C-contiguous with the exact dtype.
import numpy as np
import numpy.typing as npt

class Policy:
    def __init__(
        self,
        path: str,
        ort_library: str = "",
        device: str = "cpu",
        threads: int = 1,
        allow_cpu_fallback: bool = False,
        max_batch: int = 1,
        spin_wait: bool = False,
        optimized_model_dir: str = "",
        trt_cache_dir: str = "",
        trt_fp16: bool = True,
        warmup: bool = True,
    ) -> None: ...
    def act(
        self,
        obs: npt.NDArray[np.float32],
        max_tokens: int = 0,
        temperature: float = -1.0,
        top_k: int = -1,
        seed: int | None = None,
        latency_budget_ms: float = 0.0,
        min_tokens: int = 1,
    ) -> tuple[npt.NDArray[np.float32], dict[str, float]]: ...
    def generate(
        self,
        obs: npt.NDArray[np.float32],
        max_tokens: int = 0,
        temperature: float = -1.0,
        top_k: int = -1,
        seed: int | None = None,
        latency_budget_ms: float = 0.0,
        min_tokens: int = 1,
    ) -> tuple[npt.NDArray[np.int64], dict[str, float]]: ...
    def detokenize(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def tokenize(self, actions: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...
    @property
    def info(self) -> dict[str, object]: ...
    @property
    def step_runs(self) -> int: ...

def fsq_ids_to_codes(levels: list[int], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...

def prepare_realtime_memory(lock_memory: bool = True) -> dict[str, object]: ...
def thread_faults() -> dict[str, int]: ...
