"""Fixtures of the training tests."""
import pytest


@pytest.fixture
def one_torch_thread():
    """Training tests run on one torch thread: on a busy machine spinning worker threads make a
    few-step run much slower, and one thread keeps the numbers independent of the core count."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
