"""The trained demo models zoo:digits-mlp and zoo:digits-cnn: split, training, cache, zoo.

Every test points ``$INFERMETER_CACHE`` at a temporary directory, so none reads or
writes the user's cache. Training runs once per model for the module (in a shared
temporary cache) and the tests that only need trained weights read that cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from infermeter.errors import BackendUnavailable  # noqa: E402
from infermeter.models import list_zoo, load_model, zoo, zoo_digits  # noqa: E402
from infermeter.models.zoo_digits import CACHE_ENV_VAR  # noqa: E402

NAMES = ["digits-mlp", "digits-cnn"]
FLOORS = {"digits-mlp": 0.95, "digits-cnn": 0.97}
N_DIGITS = 1797


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache of this test's own, so nothing touches ~/.cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV_VAR, str(path))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Train each model once into a module-wide temporary cache, timing a cold and a warm call."""
    path = tmp_path_factory.mktemp("digits-cache")
    timings: dict[str, tuple[float, float]] = {}
    models: dict[str, tuple[torch.nn.Module, torch.nn.Module]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV_VAR, str(path))
        for name in NAMES:
            t0 = time.perf_counter()
            cold = zoo_digits.trained(name)
            t1 = time.perf_counter()
            warm = zoo_digits.trained(name)
            t2 = time.perf_counter()
            timings[name] = (t1 - t0, t2 - t1)
            models[name] = (cold, warm)
    return {"path": path, "timings": timings, "models": models}


@pytest.fixture
def use_shared(shared: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Path:
    path = shared["path"]
    assert isinstance(path, Path)
    monkeypatch.setenv(CACHE_ENV_VAR, str(path))
    return path


def _accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.inference_mode():
        logits = model(torch.from_numpy(x))
    assert logits.shape == (len(x), 10)
    return float((logits.argmax(1).numpy() == y).mean())


# ---------------------------------------------------------------------------- split


def test_split_is_deterministic_shaped_and_scaled() -> None:
    a = zoo_digits.digits_split(0)
    b = zoo_digits.digits_split(0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    x_train, y_train, x_test, y_test = a
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.shape[1:] == (1, 8, 8) and x_test.shape[1:] == (1, 8, 8)
    assert len(x_train) + len(x_test) == N_DIGITS and len(x_test) == pytest.approx(0.25 * N_DIGITS, abs=10)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() == 1.0
    flat = zoo_digits.digits_split(0, flat=True)
    assert flat[0].shape == (len(x_train), 64)
    np.testing.assert_array_equal(flat[0], x_train.reshape(-1, 64))
    np.testing.assert_array_equal(flat[3], y_test)
    other = zoo_digits.digits_split(1)
    assert not np.array_equal(other[3], y_test) or not np.array_equal(other[2], x_test)


def test_split_is_stratified_and_disjoint() -> None:
    _, y = zoo_digits._load_digits()
    train_idx, test_idx = zoo_digits._stratified_indices(y, 0.25, 0)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert len(train_idx) + len(test_idx) == len(y)
    _, y_train, _, y_test = zoo_digits.digits_split(0)
    full = np.bincount(y, minlength=10) / len(y)
    for part in (y_train, y_test):
        counts = np.bincount(part, minlength=10)
        assert (counts > 0).all()  # every class in both parts
        np.testing.assert_allclose(counts / len(part), full, atol=0.005)
    per_class = np.bincount(y_test, minlength=10) / np.bincount(y, minlength=10)
    np.testing.assert_allclose(per_class, 0.25, atol=0.01)


def test_missing_sklearn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(BackendUnavailable, match=r"infermeter\[optimize\]"):
        zoo_digits.digits_split(0)


# ---------------------------------------------------------------------------- training and cache


@pytest.mark.parametrize("name", NAMES)
def test_trained_model_reaches_the_accuracy_floor(name: str, use_shared: Path) -> None:
    model = zoo_digits.trained(name)
    assert not model.training
    _, _, x_test, y_test = zoo_digits.digits_split(0, flat=name == "digits-mlp")
    acc = _accuracy(model, x_test, y_test)
    assert acc >= FLOORS[name], f"{name}: held-out accuracy {acc:.4f}"
    meta = zoo_digits.cached_meta(name)
    assert meta is not None and meta["test_accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("name", NAMES)
def test_second_call_hits_the_cache(name: str, shared: dict[str, object], use_shared: Path) -> None:
    cold_s, warm_s = shared["timings"][name]  # type: ignore[index]
    cold, warm = shared["models"][name]  # type: ignore[index]
    assert warm_s < cold_s / 5, (cold_s, warm_s)
    for (k, a), (_, b) in zip(cold.state_dict().items(), warm.state_dict().items()):
        assert torch.equal(a, b), k
    path = zoo_digits.cache_path(name)
    assert path.is_file() and path.parent.parent == use_shared
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temp file


def test_corrupt_cache_file_is_retrained(fresh_cache: Path) -> None:
    path = zoo_digits.cache_path("digits-mlp")
    assert fresh_cache in path.parents
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    model = zoo_digits.trained("digits-mlp")
    # training neither moves the caller's random state nor keeps its thread count
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    _, _, x_test, y_test = zoo_digits.digits_split(0, flat=True)
    assert _accuracy(model, x_test, y_test) >= FLOORS["digits-mlp"]
    blob = torch.load(path, weights_only=True)  # rewritten with valid weights
    for k, v in model.state_dict().items():
        assert torch.equal(blob["state_dict"][k], v)


def test_cache_key_changes_with_seed_and_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    a = zoo_digits.cache_path("digits-cnn")
    assert zoo_digits.cache_path("zoo:digits-cnn") == a == zoo_digits.cache_path("cnn")
    assert zoo_digits.cache_path("digits-cnn", seed=1) != a
    assert zoo_digits.cache_path("digits-mlp") != a
    monkeypatch.setitem(zoo_digits.RECIPES, "digits-cnn", zoo_digits.Recipe(epochs=1, batch=64, lr=1e-3))
    assert zoo_digits.cache_path("digits-cnn") != a


def test_cache_hit_leaves_global_rng_and_threads_alone(use_shared: Path) -> None:
    torch.manual_seed(123)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    zoo_digits.trained("digits-mlp")
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def test_default_cache_dir() -> None:
    assert zoo_digits.default_cache_dir({CACHE_ENV_VAR: "/x/c"}) == Path("/x/c")
    assert zoo_digits.default_cache_dir({"HOME": "/h"}, platform="linux") == Path("/h/.cache/infermeter")
    assert zoo_digits.default_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/xdg"}, platform="linux") == Path("/xdg/infermeter")
    assert zoo_digits.default_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "rel"}, platform="linux") == Path("/h/.cache/infermeter")
    assert zoo_digits.default_cache_dir({"HOME": "/h"}, platform="darwin") == Path("/h/Library/Caches/infermeter")


def test_eval_npz(tmp_path: Path) -> None:
    for name, shape in (("digits-cnn", (1, 8, 8)), ("digits-mlp", (64,))):
        path = zoo_digits.digits_eval_npz(tmp_path / f"{name}-eval", name)
        assert path == tmp_path / f"{name}-eval" and path.is_file()  # no ".npz" appended
        with np.load(path) as z:
            assert set(z.files) == {"x", "labels"}
            _, _, x_test, y_test = zoo_digits.digits_split(0, flat=name == "digits-mlp")
            assert z["x"].shape[1:] == shape
            np.testing.assert_array_equal(z["x"], x_test)
            np.testing.assert_array_equal(z["labels"], y_test)


# ---------------------------------------------------------------------------- the zoo


def test_listing_the_zoo_does_not_train(fresh_cache: Path) -> None:
    zoo._entry.cache_clear()
    by_name = {e.name: e for e in list_zoo()}
    assert by_name["digits-mlp"].params == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert by_name["digits-cnn"].params == sum(p.numel() for p in zoo_digits.DigitsCNN().parameters())
    assert [s.text() for s in by_name["digits-mlp"].inputs] == ["x:float32[B,64]"]
    assert [s.text() for s in by_name["digits-cnn"].inputs] == ["x:float32[B,1,8,8]"]
    assert not fresh_cache.exists()


@pytest.mark.parametrize("name", NAMES)
def test_load_model_gives_the_trained_model(name: str, use_shared: Path) -> None:
    runner = load_model(f"zoo:{name}")
    entry = zoo.get(name)
    assert runner.describe()["params"] == entry.params
    assert runner.describe()["details"]["zoo"] == name
    _, _, x_test, y_test = zoo_digits.digits_split(0, flat=name == "digits-mlp")
    out = runner(runner.prepare({"x": x_test}))
    runner.sync()
    acc = float((out.argmax(1).cpu().numpy() == y_test).mean())
    assert acc >= FLOORS[name]
    runner.close()


def test_infermeter_zoo_lists_the_digits_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infermeter.cli import app

    result = CliRunner().invoke(app, ["zoo"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "digits-mlp" in result.output and "digits-cnn" in result.output
