"""Two small classifiers trained on scikit-learn's digits, for ``infermeter optimize``.

An optimisation (quantise, prune, distil) is only worth its speed-up if the
accuracy it costs is known, and random weights have no accuracy to lose. So
``zoo:digits-mlp`` and ``zoo:digits-cnn`` are trained, in a few seconds, on real
data that ships inside scikit-learn (1797 8×8 images, 10 classes; no network),
and judged on a fixed stratified held-out split.

Training is seeded and runs with a fixed thread count, so one machine always
gets the same weights. They are cached in the user cache directory under a key
that changes whenever anything that shapes them changes (recipe, split, seed,
torch version), and written atomically, so concurrent processes and crashes
never leave a half-written file; a file that cannot be read is retrained over.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import BackendUnavailable, SpecError

__all__ = [
    "DigitsMLP", "DigitsCNN", "Recipe", "RECIPES", "CACHE_ENV_VAR", "SEED", "TEST_FRACTION",
    "digits_split", "digits_eval_npz", "digits_train_npz", "trained", "accuracy", "default_cache_dir", "cache_path", "architecture", "cached_meta",
]

CACHE_ENV_VAR = "INFERMETER_CACHE"
SEED = 0
TEST_FRACTION = 0.25
CLASSES = 10
_FORMAT = 1  # bump when the cache file layout changes
_TRAIN_THREADS = 2  # fixed so the weights do not depend on the caller's thread setting
_INSTALL = "pip install 'infermeter[optimize]'"


# ---------------------------------------------------------------------------- models


class DigitsMLP(nn.Module):
    """64 → 256 → 128 → 10 with ReLU: input ``x[B, 64]`` (pixels in [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsCNN(nn.Module):
    """Two 3×3 convs (32, 64 channels), a 2×2 max-pool and two linear layers:
    input ``x[B, 1, 8, 8]``. Conv and linear layers both, so that quantisation and
    pruning have each kind to act on."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class Recipe:
    """Everything that shapes the trained weights besides the data; part of the cache key."""

    epochs: int
    batch: int
    lr: float
    weight_decay: float = 0.0


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe(epochs=40, batch=64, lr=1e-3),
    "digits-cnn": Recipe(epochs=20, batch=64, lr=1e-3),
}
_ARCH: dict[str, type[nn.Module]] = {"digits-mlp": DigitsMLP, "digits-cnn": DigitsCNN}
_FLAT = {"digits-mlp": True, "digits-cnn": False}


def _key(name: str) -> str:
    """``digits-mlp`` for ``digits-mlp``, ``mlp`` or ``zoo:digits-mlp``; SpecError otherwise."""
    k = name.strip().lower().removeprefix("zoo:")
    k = k if k.startswith("digits-") else f"digits-{k}"
    if k not in _ARCH:
        raise SpecError(f"unknown digits model '{name}'; use one of {', '.join(_ARCH)}")
    return k


def architecture(name: str) -> nn.Module:
    """The untrained network: what the zoo builds on the meta device to count parameters."""
    return _ARCH[_key(name)]()


# ---------------------------------------------------------------------------- data


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise BackendUnavailable(
            f"the digits models train on scikit-learn's digits data, and scikit-learn is not installed ({exc}); {_INSTALL}"
        ) from None
    data = load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / 16.0).astype(np.float32)  # pixels are 0..16
    return x, np.asarray(data.target, dtype=np.int64)


def _stratified_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out indices drawn per class, so every class keeps its share in both parts.

    Done in numpy rather than sklearn so the split depends only on the seed and
    numpy's generator, not on a scikit-learn version.
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_test = max(1, min(len(idx) - 1, int(round(len(idx) * test_fraction))))
        test.append(rng.permutation(idx)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def digits_split(
    seed: int = SEED, *, flat: bool = False, test_fraction: float = TEST_FRACTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 pixels in [0, 1], int64 labels.

    ``x`` is ``[n, 1, 8, 8]`` (for the CNN) or, with ``flat``, ``[n, 64]`` (for the
    MLP). The split is stratified and fixed by ``seed``, so every model, every
    optimised variant and every process is judged on the same held-out images.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = _load_digits()
    train_idx, test_idx = _stratified_indices(y, test_fraction, seed)
    x = x.reshape(len(x), 64) if flat else x.reshape(len(x), 1, 8, 8)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _split_for(key: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return digits_split(seed, flat=_FLAT[key])


def digits_eval_npz(path: str | Path, name: str, seed: int = SEED) -> Path:
    """Write the held-out split for ``--eval``: the model's input ``x`` and ``labels``."""
    key = _key(name)
    _, _, x_test, y_test = _split_for(key, seed)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez(f, x=x_test, labels=y_test)
    return p


def digits_train_npz(path: str | Path, name: str, seed: int = SEED) -> Path:
    """Write the training split (``x``, ``labels``): rows ``optimize`` distils students on."""
    key = _key(name)
    x_train, y_train, _, _ = _split_for(key, seed)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        np.savez(f, x=x_train, labels=y_train)
    return p


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on ``x``; the model's mode is left as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            pred = model(torch.from_numpy(np.ascontiguousarray(x))).argmax(dim=1).numpy()
    finally:
        model.train(was_training)
    return float((pred == y).mean())


# ---------------------------------------------------------------------------- cache


def default_cache_dir(env: Mapping[str, str] = os.environ, *, platform: str | None = None) -> Path:
    """``$INFERMETER_CACHE`` when set, else ``<user cache dir>/infermeter``.

    The user cache directory is ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux and
    other Unixes, ``~/Library/Caches`` on macOS and ``%LOCALAPPDATA%`` on Windows
    (as ``store.default_store_path`` picks the data directory).
    """
    explicit = env.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    plat = platform or sys.platform
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if plat.startswith("win"):
        local = env.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / "infermeter" / "cache"
    if plat == "darwin":
        return home / "Library" / "Caches" / "infermeter"
    xdg = env.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"
    return base / "infermeter"


def _recipe_hash(key: str, seed: int) -> str:
    torch_mm = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    blob = json.dumps(
        {"format": _FORMAT, "model": key, "recipe": asdict(RECIPES[key]), "seed": seed,
         "test_fraction": TEST_FRACTION, "threads": _TRAIN_THREADS, "torch": torch_mm},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(name: str, seed: int = SEED, env: Mapping[str, str] = os.environ) -> Path:
    """Where the trained weights of ``name`` are (or will be) cached."""
    key = _key(name)
    return default_cache_dir(env) / "zoo" / f"{key}-{_recipe_hash(key, seed)}.pt"


def _read_cache(path: Path, model: nn.Module) -> bool:
    """Load cached weights into ``model``; False (and nothing loaded) when the file is
    missing, truncated, corrupt or of another shape: the caller retrains over it."""
    if not path.is_file():
        return False
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state_dict"])
    except Exception:
        return False
    return True


def _write_cache(path: Path, model: nn.Module, meta: dict[str, float]) -> None:
    """Temp file in the same directory, then ``os.replace``: readers see the old file
    or the whole new one, never a partial write, even with concurrent trainers."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"state_dict": model.state_dict(), "meta": meta}, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # a read-only cache costs a retraining next time, not this run
        warnings.warn(f"could not cache trained weights at {path} ({exc}); set {CACHE_ENV_VAR} to a writable directory",
                      RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------------------- training


def _train(key: str, seed: int) -> tuple[nn.Module, dict[str, float]]:
    recipe = RECIPES[key]
    x_train, y_train, x_test, y_test = _split_for(key, seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    order = np.random.default_rng(seed + 1)  # minibatch order, apart from the split's stream
    threads = torch.get_num_threads()
    start = time.perf_counter()
    # fork_rng: training must not move the caller's torch random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(_TRAIN_THREADS)
        try:
            model = _ARCH[key]()
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
            loss_fn = nn.CrossEntropyLoss()
            model.train()
            for _ in range(recipe.epochs):
                perm = torch.from_numpy(order.permutation(len(xt)))
                for i in range(0, len(perm), recipe.batch):
                    idx = perm[i:i + recipe.batch]
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(xt[idx]), yt[idx]).backward()
                    opt.step()
        finally:
            torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    model.eval()
    meta = {"train_s": seconds, "test_accuracy": accuracy(model, x_test, y_test),
            "train_accuracy": accuracy(model, x_train, y_train)}
    return model, meta


def trained(name: str, seed: int = SEED) -> nn.Module:
    """The trained model ``digits-mlp`` or ``digits-cnn``, in eval mode, on the CPU.

    Loaded from the cache when a valid file is there; otherwise trained (a few
    seconds; needs scikit-learn) and cached for next time.
    """
    key = _key(name)
    path = cache_path(key, seed)
    with torch.random.fork_rng(devices=[]):  # the init is overwritten; the caller's RNG must not move
        model = _ARCH[key]()
    if _read_cache(path, model):
        return model.eval()
    model, meta = _train(key, seed)
    _write_cache(path, model, meta)
    return model.eval()


def cached_meta(name: str, seed: int = SEED) -> dict[str, float] | None:
    """Training time and accuracies recorded beside cached weights; None when not cached."""
    try:
        blob = torch.load(cache_path(name, seed), map_location="cpu", weights_only=True)
        return {k: float(v) for k, v in blob["meta"].items()}
    except Exception:
        return None
