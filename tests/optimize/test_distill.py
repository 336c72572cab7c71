"""Distillation with real models and real data: a small MLP student learns the
trained digits MLP, a shallow BERT student (every other layer) learns the full
encoder's hidden states, and failures are UsageError or TransformError.

``$INFERMETER_CACHE`` points at a temporary directory throughout, so the digits
teacher is trained once for the module and nothing touches the user's cache.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from torch import nn  # noqa: E402

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.models import zoo_digits  # noqa: E402
from infermeter.models.zoo import BertEncoder  # noqa: E402
from infermeter.models.zoo_digits import CACHE_ENV_VAR  # noqa: E402
from infermeter.optimize.distill import DistillInfo, distill, shallow_student  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV_VAR, str(path))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The trained digits MLP (trained once, into a module-wide temporary cache) and its split."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV_VAR, str(tmp_path_factory.mktemp("digits-cache")))
        teacher = zoo_digits.trained("digits-mlp")
    x_train, y_train, x_test, y_test = zoo_digits.digits_split(flat=True)
    return {"teacher": teacher, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _small_mlp(width: int = 32, classes: int = 10, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, classes))


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _top1(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return m(torch.from_numpy(x)).argmax(dim=1).numpy()


# ---------------------------------------------------------------------------- digits: class scores (KL)


def test_small_mlp_learns_the_digits_teacher(digits) -> None:
    teacher, x_train, x_test, y_test = digits["teacher"], digits["x_train"], digits["x_test"], digits["y_test"]
    before = _state(teacher)
    student = _small_mlp()
    # lr 3e-3: past 0.85 within ~100 steps, so a loaded machine that gets few steps in 5 s still passes.
    info = distill(teacher, student, {"x": x_train}, input_names=["x"], seconds=5.0, lr=3e-3)

    assert isinstance(info, DistillInfo)
    assert info.loss == "KL(T=2) on class scores"
    assert info.rows == len(x_train)
    assert info.stopped_by in ("time budget", "epochs")
    assert info.steps >= 1 and info.epochs > 0 and 0 < info.seconds < 60
    assert math.isfinite(info.loss_first) and info.loss_last < info.loss_first
    assert "\n" not in info.description and "KL(T=2)" in info.description

    acc = zoo_digits.accuracy(student, x_test, y_test)
    agree = float((_top1(student, x_test) == _top1(teacher, x_test)).mean())
    print(f"\ndigits student: held-out accuracy {acc:.4f}, top-1 agreement with teacher {agree:.4f}, "
          f"teacher accuracy {zoo_digits.accuracy(teacher, x_test, y_test):.4f}; {info.description}")
    assert acc >= 0.85
    assert agree >= 0.85

    assert not student.training  # ends in eval mode
    assert not teacher.training  # the teacher is frozen and left as it was
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_labels_and_epoch_limit_and_seeded_repeat(digits) -> None:
    teacher, x_train, y_train = digits["teacher"], digits["x_train"], digits["y_train"]
    rng_before = torch.random.get_rng_state()
    a, b = _small_mlp(), _small_mlp()
    kw = dict(input_names=["x"], seconds=60.0, max_epochs=2, labels=y_train, label_weight=0.5, seed=3)
    info_a = distill(teacher, a, {"x": x_train}, **kw)
    info_b = distill(teacher, b, {"x": x_train}, **kw)

    assert info_a.stopped_by == "epochs"
    assert info_a.epochs == pytest.approx(2.0)
    assert info_a.steps == 2 * math.ceil(len(x_train) / 64)
    assert "CE on labels" in info_a.description
    # Same seed, same start: the same weights; and the caller's random state has not moved.
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert info_a.loss_first == info_b.loss_first and info_a.loss_last == info_b.loss_last
    assert torch.equal(rng_before, torch.random.get_rng_state())


def test_zero_budget_still_takes_one_step(digits) -> None:
    student = _small_mlp()
    before = _state(student)
    info = distill(digits["teacher"], student, {"x": digits["x_train"]}, input_names=["x"], seconds=0.0)
    assert info.steps == 1 and info.stopped_by == "time budget"
    assert info.loss_first == info.loss_last
    assert not all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_dropout_student_trains_in_train_mode_and_ends_in_eval(digits) -> None:
    seen: list[bool] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        student = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    student[2].register_forward_hook(lambda mod, args, out: seen.append(mod.training))
    distill(digits["teacher"], student, {"x": digits["x_train"]}, input_names=["x"], seconds=30.0, max_epochs=1)
    assert seen and all(seen)
    assert not student.training


# ---------------------------------------------------------------------------- shallow students


def test_shallow_bert_keeps_every_other_layer_and_learns_the_encoder() -> None:
    torch.manual_seed(0)
    teacher = BertEncoder(4, 64, 4, 128).eval()
    student, note = shallow_student(teacher)

    assert note == "kept 2 of 4 _BertLayer blocks in 'layers'"
    assert len(teacher.layers) == 4 and len(student.layers) == 2
    for s_layer, t_layer in zip(student.layers, [teacher.layers[0], teacher.layers[2]]):  # DistilBERT-style init
        for (name, p), q in zip(s_layer.named_parameters(), t_layer.parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), name
    assert torch.equal(student.word.weight, teacher.word.weight)

    ids = np.random.default_rng(0).integers(0, 1000, size=(192, 16)).astype(np.int64)
    with torch.inference_mode():
        t_out = teacher(torch.from_numpy(ids[:4]))
        s_out = student(torch.from_numpy(ids[:4]))
    assert s_out[0].shape == t_out[0].shape and s_out[1].shape == t_out[1].shape

    before = _state(teacher)
    info = distill(teacher, student, {"input_ids": ids}, input_names=["input_ids"], seconds=3.0)
    assert info.loss == "MSE on outputs"
    assert info.loss_last < info.loss_first
    assert not student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


class _Stacked(nn.Module):
    """A stem, then a Sequential of five identical linear blocks, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.body = nn.Sequential(*[nn.Linear(16, 16) for _ in range(5)])
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.relu(self.stem(x))))


class _FixedCount(nn.Module):
    """Indexes its blocks by a fixed count: breaks once blocks are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = torch.relu(self.blocks[i](x))
        return x


def test_shallow_sequential_of_odd_length() -> None:
    torch.manual_seed(0)
    teacher = _Stacked()
    student, note = shallow_student(teacher)
    assert note == "kept 3 of 5 Linear blocks in 'body'"
    assert [k for k, _ in student.body.named_children()] == ["0", "1", "2"]
    assert torch.equal(student.body[1].weight, teacher.body[2].weight)
    assert torch.equal(student.body[2].weight, teacher.body[4].weight)
    assert student(torch.zeros(2, 8)).shape == (2, 3)


def test_shallow_student_needs_repeated_blocks() -> None:
    with pytest.raises(TransformError, match=r"no stack of repeated blocks in DigitsMLP to halve.*narrow student"):
        shallow_student(zoo_digits.architecture("digits-mlp"))


def test_broken_shallow_forward_is_a_transform_error() -> None:
    torch.manual_seed(0)
    teacher = _FixedCount()
    student, note = shallow_student(teacher)
    assert note == "kept 2 of 4 Linear blocks in 'blocks'"
    x = np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)
    with pytest.raises(TransformError, match=r"student's forward failed: .*index 2 is out of range"):
        distill(teacher, student, {"x": x}, input_names=["x"], seconds=1.0)
    assert not student.training


# ---------------------------------------------------------------------------- errors


def test_wrong_output_width_is_a_transform_error(digits) -> None:
    with pytest.raises(TransformError, match=r"student outputs \[64, 5\] but the teacher \[64, 10\]"):
        distill(digits["teacher"], _small_mlp(classes=5), {"x": digits["x_train"]}, input_names=["x"], seconds=1.0)


@pytest.mark.parametrize("case, match", [
    ("missing", r"no rows for input 'x'"),
    ("empty", r"needs some input rows"),
    ("mismatch", r"different row counts \[3, 5\]"),
    ("labels", r"label_weight 0.5 needs labels"),
])
def test_bad_requests_are_usage_errors(digits, case: str, match: str) -> None:
    x = digits["x_train"]
    teacher = digits["teacher"]
    if case == "missing":
        call = lambda: distill(teacher, _small_mlp(), {"pixels": x}, input_names=["x"])  # noqa: E731
    elif case == "empty":
        call = lambda: distill(teacher, _small_mlp(), {"x": x[:0]}, input_names=["x"])  # noqa: E731
    elif case == "mismatch":
        call = lambda: distill(teacher, _small_mlp(), {"x": x[:3], "m": x[:5]}, input_names=["x", "m"])  # noqa: E731
    else:
        call = lambda: distill(teacher, _small_mlp(), {"x": x}, input_names=["x"], label_weight=0.5)  # noqa: E731
    with pytest.raises(UsageError, match=match):
        call()
