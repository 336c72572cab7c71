"""Sweep configs: listed and ranged values, --grid, errors that name their line, points and ids."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infermeter.errors import UsageError
from infermeter.sweep import SweepConfig, SweepConfigError, config_from_dict, load_config, parse_grid


def write(tmp_path, text, name="sweep.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def values(axes):
    return config_from_dict({"model": "m.onnx", "axes": axes}).values


@pytest.mark.parametrize(
    "raw, expected",
    [
        ([1, 8, 32], [1, 8, 32]),
        (8, [8]),
        ({"range": [1, 4]}, [1, 2, 3, 4]),
        ({"range": [1, 9], "step": 2}, [1, 3, 5, 7, 9]),
        ({"range": [1, 10], "step": 4}, [1, 5, 9]),
        ({"range": [1, 64], "scale": "log2"}, [1, 2, 4, 8, 16, 32, 64]),
        ({"range": [1, 64], "step": 2, "scale": "log2"}, [1, 4, 16, 64]),
        ({"range": [3, 30], "scale": "log2"}, [3, 6, 12, 24]),
    ],
)
def test_listed_and_ranged_values(raw, expected):
    assert values({"batch": raw})["batch"] == expected


def test_grid_builds_the_same_axes_as_yaml(tmp_path):
    grid = parse_grid("batch=1..64:log2:2; threads=1,2 ;dims.seq=64..256:64;dtype=float32,bfloat16")
    assert grid == {
        "batch": {"range": [1, 64], "scale": "log2", "step": 2},
        "threads": [1, 2],
        "dims.seq": {"range": [64, 256], "step": 64},
        "dtype": ["float32", "bfloat16"],
    }
    p = write(tmp_path, "model: m.onnx\naxes:\n  batch: {range: [1, 64], step: 2, scale: log2}\n  threads: [1, 2]\n"
                        "  dims.seq: {range: [64, 256], step: 64}\n  dtype: [float32, bfloat16]\n")
    from_yaml = load_config(p)
    from_grid = config_from_dict({"model": "m.onnx", "axes": grid})
    assert from_yaml.values == from_grid.values
    assert from_yaml.values["dims.seq"] == [64, 128, 192, 256]
    assert from_yaml.sweep_id == from_grid.sweep_id  # same measurement, same resume key
    for bad in ("batch", "batch=", "=1", "batch=1;batch=2", ""):
        with pytest.raises(UsageError, match="--grid"):
            parse_grid(bad)


def test_points_are_the_product_and_map_to_bench_keywords():
    cfg = config_from_dict({
        "model": "m.onnx", "inputs": ["ids:int64[B,seq]"],
        "settings": {"max_time_s": 2, "dims": {"seq": 8, "heads": 2}},
        "axes": {"batch": [1, 8], "dims.seq": [64, 128], "backend": ["cpu"], "threads": [None, 2], "settings.seed": [0]},
    })
    points = cfg.points()
    assert len(points) == 2 * 2 * 1 * 2 * 1
    assert [p.index for p in points] == list(range(8))
    p = points[-1]
    assert p.axes == {"batch": 8, "dims.seq": 128, "backend": "CPUExecutionProvider", "threads": 2, "settings.seed": 0}
    assert p.kwargs == {
        "model": "m.onnx", "inputs": ["ids:int64[B,seq]"], "max_time_s": 2, "dims": {"seq": 128, "heads": 2},
        "batch_size": 8, "providers": ["CPUExecutionProvider"], "threads": 2, "seed": 0,
    }
    assert points[0].kwargs["threads"] is None and points[0].kwargs["dims"]["seq"] == 64
    assert p.key == json.dumps(p.axes, sort_keys=True, separators=(",", ":"))
    assert len({q.key for q in points}) == len(points)
    assert config_from_dict({"model": "m.onnx"}).points()[0].kwargs == {"model": "m.onnx"}  # no axes: one point


def test_model_axis_and_sweep_id():
    a = config_from_dict({"axes": {"model": ["a.onnx", "b.onnx"], "batch": [1]}})
    assert [p.kwargs["model"] for p in a.points()] == ["a.onnx", "b.onnx"]
    assert a.sweep_id.startswith("sw-") and len(a.sweep_id) == 13
    same = config_from_dict({"axes": {"model": ["a.onnx", "b.onnx"], "batch": [1]}, "executor": "ray", "parallel": 4,
                             "point_timeout_s": 5})
    assert same.sweep_id == a.sweep_id  # how points run is not what is measured
    assert config_from_dict({"axes": {"model": ["a.onnx", "b.onnx"], "batch": [1, 2]}}).sweep_id != a.sweep_id
    assert config_from_dict({"axes": {"model": ["a.onnx"], "batch": [1]}, "processes": 3}).sweep_id != a.sweep_id
    assert config_from_dict({"id": "mine", "model": "a.onnx"}).sweep_id == "mine"


def test_unknown_axis_names_its_line_and_the_known_axes(tmp_path):
    p = write(tmp_path, "model: spin:predict_1ms\nsettings:\n  max_time_s: 1\naxes:\n  batch: [1, 2]\n\n  batchsize: [1, 8]\n")
    with pytest.raises(SweepConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p} line 7: unknown axis 'batchsize'")
    assert "did you mean 'batch'" in msg and "known axes: model, backend, batch, dims.NAME" in msg
    assert e.value.exit_code == 2 and "\n" not in msg


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("model: m.onnx\naxes:\n  batch: [1, 2]\n  threads: [1, 0]\n", 4, "axis 'threads': expected a positive integer, got 0"),
        ("model: m.onnx\naxes:\n  batch:\n    - 1\n    - 8\n    - eight\n", 6, "axis 'batch': expected a positive integer, got 'eight'"),
        ("model: m.onnx\naxes:\n  batch: [1, 2, 1]\n", 3, "value 1 is listed twice"),
        ("model: m.onnx\naxes:\n  dtype: [float32, float33]\n", 3, "unknown dtype 'float33'"),
        ("model: m.onnx\naxes:\n  device: [cpu, gpu]\n", 3, "unknown device 'gpu'"),
        ("model: m.onnx\naxes:\n  batch: {range: [1, 64], scale: log3}\n", 3, "unknown scale 'log3'"),
        ("model: m.onnx\naxes:\n  batch:\n    range: [8, 1]\n", 4, "range [8, 1] is empty"),
        ("model: m.onnx\naxes:\n  batch: []\n", 3, "axis 'batch' has no values"),
        ("model: m.onnx\nsettings:\n  max_time: 3\n", 3, "unknown setting 'max_time'; did you mean 'max_time_s'?"),
        ("model: m.onnx\nsettings:\n  store: false\n", 3, "'store' cannot be set in a sweep"),
        ("model: m.onnx\nsettings: {batch_sizes: [1, 2]}\n", 2, "vary it with the 'batch' axis"),
        ("model: m.onnx\n\ncolour: red\n", 3, "unknown key 'colour'; known keys: id, model"),
        ("model: m.onnx\nray:\n  num_gpu: 1\n", 3, "unknown key 'num_gpu'; known keys: address, num_cpus, num_gpus"),
        ("model: m.onnx\nprocesses: 0\n", 2, "processes: input should be greater than or equal to 1"),
        ("model: m.onnx\nexecutor: slurm\n", 2, "executor: input should be 'local' or 'ray'"),
        ("model: m.pt\naxes:\n  backend: [cpu, cuda]\n", 3, "needs .onnx models; 'm.pt' is not one"),
        ("model: m.onnx\naxes:\n  backend: [cpu, tpu]\n", 3, "unknown backend 'tpu'"),
        ("inputs: [x]\naxes:\n  batch: [1]\n", 1, "no model"),
        ("model: m.onnx\naxes:\n  model: [a.onnx]\n", 3, "the model is given twice"),
        ("model: m.onnx\naxes:\n  settings.nosuch: [1, 2]\n", 3, "unknown setting 'nosuch'"),
        ("model: m.onnx\nsettings: {max_time_s: 30}\npoint_timeout_s: 10\n", 3, "must be longer than max_time_s (30 s)"),
        ("model: m.onnx\nsettings: {}\naxes:\n  scenario: [single-stream, ' ']\n", 4, "axis 'scenario': expected a non-empty string"),
    ],
)
def test_bad_values_name_their_line(tmp_path, text, line, fragment):
    p = write(tmp_path, text)
    with pytest.raises(SweepConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p} line {line}: "), str(e.value)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("model: m.onnx\naxes: {batch: [1, 2]\n", "line 3: not valid YAML"),
        ("model: m.onnx\n  axes: 1\n", "line 2: not valid YAML"),
        ("\tmodel: m.onnx\n", "line 1: not valid YAML"),
        ("just some words\n", "expected a YAML mapping of sweep settings (model:, axes: …), got plain text"),
        ("- model: m.onnx\n", "got a list"),
        ("", "got an empty file"),
    ],
)
def test_not_yaml_or_not_a_mapping(tmp_path, text, fragment):
    p = write(tmp_path, text)
    with pytest.raises(SweepConfigError) as e:
        load_config(p)
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_missing_file_and_command_line_sources(tmp_path):
    with pytest.raises(SweepConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = write(tmp_path, "model: m.onnx\naxes:\n  batch: [1, 2]\n")
    with pytest.raises(SweepConfigError, match=r"^--grid: unknown axis 'thread'; did you mean 'threads'"):
        load_config(p, grid=parse_grid("thread=1,2"))
    with pytest.raises(SweepConfigError, match=r"^command line: processes: input should be greater"):
        load_config(p, overrides={"processes": 0})
    cfg = load_config(p, overrides={"processes": 2, "settings": {"max_time_s": 1}}, grid=parse_grid("threads=1,2"))
    assert cfg.processes == 2 and cfg.settings == {"max_time_s": 1} and list(cfg.values) == ["batch", "threads"]


def test_python_api_validates_at_construction():
    with pytest.raises(ValueError, match="unknown axis 'batchsize'"):
        SweepConfig(model="m.onnx", axes={"batchsize": [1]})
    cfg = SweepConfig(model="m.onnx", axes={"batch": {"range": [1, 4], "scale": "log2"}})
    assert cfg.values == {"batch": [1, 2, 4]}
    assert cfg.replace(processes=3, parallel=None).processes == 3


def test_importing_the_sweep_package_is_light():
    code = ("import sys, infermeter.sweep, infermeter.sweep.worker; "
            "print(sorted(m for m in ('yaml', 'pydantic', 'ray', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
