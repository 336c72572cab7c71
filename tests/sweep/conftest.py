import pytest

from sweep_helpers import worker_env


@pytest.fixture
def env(tmp_path):
    """Worker environment; SWEEP_TEST_DIR lets sweep_models count the processes that import it."""
    return worker_env(SWEEP_TEST_DIR=str(tmp_path))
