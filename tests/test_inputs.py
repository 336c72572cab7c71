import numpy as np
import pytest

from infermeter.errors import InputError, UsageError
from infermeter.inputs import (
    InputSpec,
    load_data,
    make_batches,
    merge_specs,
    parse_batch_sizes,
    parse_dims,
    parse_input,
)


def test_parse_input_shape_dtype_and_range():
    s = parse_input("x:float32[B,3,224,224]")
    assert s == InputSpec("x", "float32", ("B", 3, 224, 224))
    assert s.resolve(8) == (8, 3, 224, 224)
    ids = parse_input("input_ids:int64[B,seq]@0:30522")
    assert (ids.low, ids.high) == (0, 30522)
    assert ids.resolve(2, {"seq": 16}) == (2, 16)
    assert parse_input(ids.text()) == ids
    assert parse_input("m:fp16[4]").dtype == "float16"


@pytest.mark.parametrize("bad", ["x", "x:float32", "x:float32[B,,3]", "x:float32[B,-1]", "x:cheese[B]", "x:int64[B]@5:1", ":f[1]"])
def test_parse_input_rejects_garbage_with_syntax_hint(bad):
    with pytest.raises(InputError) as e:
        parse_input(bad)
    assert "\n" not in str(e.value)


def test_symbolic_dim_left_unset_names_the_fix():
    with pytest.raises(InputError, match=r"--dim seq=N"):
        parse_input("ids:int64[B,seq]").resolve(1)


def test_parse_dims_and_batches():
    assert parse_dims(["seq=128", "h=4,w=5"]) == {"seq": 128, "h": 4, "w": 5}
    for bad in (["seq"], ["seq=0"], ["seq=x"], ["=3"]):
        with pytest.raises(UsageError):
            parse_dims(bad)
    assert parse_batch_sizes("1,8,32") == [1, 8, 32]
    assert parse_batch_sizes([4, 4, 2]) == [4, 2]
    for bad in ("0", "1,x", "", "-2", "1.5"):
        with pytest.raises(UsageError, match="batch"):
            parse_batch_sizes(bad)


def test_merge_specs_checks_names_and_rank():
    model = [InputSpec("a", "float32", ("B", 4)), InputSpec("b", "int64", ("B", "seq"))]
    merged = merge_specs(model, [parse_input("b:int64[B,7]")])
    assert merged[1].shape == ("B", 7) and merged[0] is model[0]
    with pytest.raises(InputError, match="no input 'c'"):
        merge_specs(model, [parse_input("c:float32[B,4]")])
    with pytest.raises(InputError, match="rank"):
        merge_specs(model, [parse_input("a:float32[B,4,1]")])
    with pytest.raises(InputError, match=r"is float32 in the model .* gives int64"):
        merge_specs(model, [parse_input("a:int64[B,4]")])
    assert merge_specs([], [parse_input("z:float32[B]")])[0].name == "z"


def test_random_batches_are_seeded_typed_and_in_range():
    specs = [parse_input("x:float32[B,5]"), parse_input("ids:int64[B,3]@10:20"), parse_input("m:bool[B]"),
             parse_input("h:bfloat16[B,2]")]
    b1, notes = make_batches(specs, 4, seed=3)
    b2, _ = make_batches(specs, 4, seed=3)
    assert not notes and len(b1) >= 1
    np.testing.assert_array_equal(b1[0]["x"], b2[0]["x"])
    assert b1[0]["x"].dtype == np.float32 and b1[0]["x"].shape == (4, 5)
    assert b1[0]["ids"].dtype == np.int64 and b1[0]["ids"].min() >= 10 and b1[0]["ids"].max() < 20
    assert b1[0]["m"].dtype == np.bool_
    assert b1[0]["h"].dtype == np.float32  # bfloat16 made as float32, cast by the runner
    if len(b1) > 1:
        assert not np.array_equal(b1[0]["x"], b1[1]["x"])


def test_pool_respects_memory_cap():
    spec = [parse_input("x:float32[B,1000]")]
    batches, _ = make_batches(spec, 10, pool=8, pool_bytes=100_000)
    assert len(batches) == 2  # each batch is 40 kB


def test_data_rows_are_not_reused_before_exhausted(tmp_path):
    rows = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "d.npy", rows)
    spec = [parse_input("x:float32[B,3]")]
    data = load_data(tmp_path / "d.npy", spec)
    batches, notes = make_batches(spec, 4, data=data)
    assert len(batches) == 5 and not notes
    seen = np.concatenate([b["x"] for b in batches])
    np.testing.assert_array_equal(seen, rows)


def test_data_smaller_than_batch_repeats_with_note(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2), np.float32), labels=np.zeros(3))
    spec = [parse_input("x:float32[B,2]")]
    batches, notes = make_batches(spec, 8, data=load_data(tmp_path / "d.npz", spec))
    assert batches[0]["x"].shape == (8, 2) and "fewer than batch" in notes[0]


def test_bad_data_files(tmp_path):
    spec = [parse_input("x:float32[B,3]")]
    with pytest.raises(InputError, match="does not exist"):
        load_data(tmp_path / "nope.npy", spec)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="cannot read"):
        load_data(tmp_path / "junk.npy", spec)
    np.savez(tmp_path / "other.npz", y=np.ones((2, 3)))
    with pytest.raises(InputError, match="lacks arrays for input"):
        load_data(tmp_path / "other.npz", spec)
    np.save(tmp_path / "wide.npy", np.ones((4, 5), np.float32))
    with pytest.raises(InputError, match="shape"):
        make_batches(spec, 2, data=load_data(tmp_path / "wide.npy", spec))
    np.save(tmp_path / "ints.npy", np.ones((4, 3), np.int64))
    with pytest.raises(InputError, match="wants float32"):
        make_batches(spec, 2, data=load_data(tmp_path / "ints.npy", spec))
    (tmp_path / "d.csv").write_text("1,2,3")
    with pytest.raises(InputError, match="neither .npy nor .npz"):
        load_data(tmp_path / "d.csv", spec)
