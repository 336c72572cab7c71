"""``infermeter report`` end to end, in subprocesses, against a store the test fills."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("matplotlib")


@pytest.fixture
def stored(tmp_path, real_results, variety):
    """The results saved in tmp_path/store.db, which the ``cli`` fixture's commands use."""
    from infermeter.store import Store

    variety = [r.model_copy(update={"invocation": "synthetic000"}) for r in variety]
    with Store(tmp_path / "store.db") as st:
        for r in [*real_results, *variety]:
            st.save(r)
    return real_results, variety


def one_line_error(p, code):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_report_ids_invocation_and_sweep_with_pngs(tmp_path, cli, stored):
    real, variety = stored
    ids = [r.id[:10] for r in real[:2]]  # unique prefixes work
    p = cli("report", *ids, "--html", "out.html", "--png", "figs", "--title", "My <runs>")
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout and "2 runs" in p.stdout and "PNG" in p.stdout
    html = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert "<title>My &lt;runs&gt;</title>" in html
    data = json.loads(re.search(r'id="im-data">(.*?)</script>', html, re.S).group(1))
    assert [r["id"] for r in data["results"]] == [r.id for r in real[:2]]
    pngs = sorted(f.name for f in (tmp_path / "figs").iterdir())
    assert pngs == sorted(f"{s}.png" for s in data["charts"]) and "vs-batch.png" in pngs

    p = cli("report", "--invocation", real[0].invocation, "--sweep", "sweep0001", "--html", "both.html")
    assert p.returncode == 0, p.stderr
    data = json.loads(re.search(r'id="im-data">(.*?)</script>', (tmp_path / "both.html").read_text(), re.S).group(1))
    got = [r["id"] for r in data["results"]]  # the invocation's runs, then the sweep's, each once
    assert got[:3] == [r.id for r in real] and sorted(got[3:]) == sorted(r.id for r in variety if r.sweep)
    assert any(s.startswith("vs-threads") for s in data["charts"])

    p = cli("report", real[0].id, "--png", "only-png")
    assert p.returncode == 0 and not (tmp_path / "out2.html").exists(), p.stderr
    assert len(list((tmp_path / "only-png").glob("*.png"))) == 2


def test_bad_inputs_one_line_nonzero_and_nothing_lost(tmp_path, cli, stored):
    real, _ = stored
    out = tmp_path / "out.html"
    out.write_text("the previous report")

    line = one_line_error(cli("report", "nosuchrun", "--html", "out.html"), 1)
    assert "no run 'nosuchrun'" in line
    line = one_line_error(cli("report", real[0].id, "--html", "missing/dir/out.html"), 2)
    assert "cannot write" in line and "does not exist" in line
    # the path is checked before the store is read: a bad path wins over a bad id
    line = one_line_error(cli("report", "nosuchrun", "--html", str(tmp_path)), 2)
    assert "is a directory" in line
    line = one_line_error(cli("report", real[0].id, "--html", "out.html", "--png", "out.html"), 2)
    assert "not a directory" in line
    assert "no runs given" in one_line_error(cli("report", "--html", "out.html"), 2)
    assert "--html" in one_line_error(cli("report", real[0].id), 2)
    assert "no sweep" in one_line_error(cli("report", "--sweep", "nosuchsweep", "--html", "out.html"), 1)
    assert out.read_text() == "the previous report"
    assert not list(tmp_path.glob(".out.html.*"))  # no temporary file left behind
