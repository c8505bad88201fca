"""benchmarks/model_speed.py: its docs block, its tables and its models (no speed is timed)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import model_speed as ms

ROWS = [
    {
        "model": "small-cnn",
        "input": "32 px grey",
        "pass": "forward",
        "channels_last_ips": 2012.4,
        "contiguous_ips": 1750.0,
        "ratio": 2012.4 / 1750.0,
    },
    {
        "model": "efficientnet-lite0",
        "input": "128 px",
        "pass": "forward + backward, backbone frozen",
        "channels_last_ips": 190.2,
        "contiguous_ips": 126.8,
        "ratio": 190.2 / 126.8,
    },
]
INFO = {"date": "2026-01-02 10:00 UTC", "cpu": "Some CPU", "threads": 2, "load": "0.10"}


def _data(others: float = 0.01, quick: bool = False) -> dict:
    info = {**INFO, "elapsed": 100.0, "others": others}
    return {"info": info, "torch": "2.13.0", "pretrained": True, "batch": 80, "warmup": 2,
            "min_calls": 5, "min_seconds": 3.0, "quick": quick, "rows": ROWS}  # fmt: skip


def test_the_doc_block_is_what_the_committed_json_renders():
    text = ms.DOC.read_text(encoding="utf-8")
    committed = ms.load(ms.DEFAULT_JSON)  # None until the benchmark has run: "not measured yet"
    assert ms.rewrite_doc(text, committed) == text, "docs/models.md is stale: run model_speed.py"
    if committed is None:
        assert ms.NOT_MEASURED in text
    assert ms.check_docs(ms.DEFAULT_JSON) == 0


def test_the_committed_json_has_every_case():
    if not ms.DEFAULT_JSON.exists():
        pytest.skip(f"{ms.DEFAULT_JSON.name} not committed yet: run benchmarks/model_speed.py")
    data = json.loads(ms.DEFAULT_JSON.read_text(encoding="utf-8"))
    assert not data["quick"] and data["batch"] == ms.BATCH
    cases = [(r["model"], r["input"], r["pass"]) for r in data["rows"]]
    assert cases == [(c.model, c.input_text, c.pass_name) for c in ms.CASES]
    for row in data["rows"]:
        assert row["ratio"] == pytest.approx(row["channels_last_ips"] / row["contiguous_ips"])
        assert min(row["calls"]) >= ms.MIN_CALLS


def test_rows_render_as_a_table_with_the_run_facts():
    block = "\n".join(ms.doc_block(_data()))
    assert "| `small-cnn` | 32 px grey | forward | 2,012 | 1,750 | 1.15× |" in block
    frozen = "| 128 px | forward + backward, backbone frozen | 190 | 127 | 1.50× |"
    assert f"| `efficientnet-lite0` {frozen}" in block
    assert "Some CPU with 2 torch threads, 2026-01-02 10:00 UTC, batch 80, float32" in block
    assert "other processes used 1% of the CPUs" in block and "busy" not in block
    assert "the machine was busy" in "\n".join(ms.doc_block(_data(others=0.4)))
    assert "not a measurement" in "\n".join(ms.doc_block(_data(quick=True)))
    assert ms.doc_block(None) == [ms.NOT_MEASURED]
    report = ms.report(_data(others=0.4))
    assert report.startswith("# Model speed\n") and "## Images per second" in report
    assert "the machine was busy" in report and "torch threads: 2" in report
    assert "| `small-cnn` | 32 px grey | forward | 2,012 | 1,750 | 1.15× |" in report


def test_rewrite_changes_only_the_block():
    text = f"# Models\n\nbefore\n\n{ms.START}\nold table\n{ms.END}\n\nafter\n"
    new = ms.rewrite_doc(text, _data())
    assert new.startswith("# Models\n\nbefore\n\n" + ms.START + "\nMeasured on Some CPU")
    assert new.endswith(ms.END + "\n\nafter\n") and "old table" not in new
    assert ms.rewrite_doc(new, _data()) == new
    for broken in ("no markers", f"{ms.END}\n{ms.START}", f"{ms.START}\n{ms.START}\n{ms.END}"):
        with pytest.raises(ValueError, match="expected one"):
            ms.rewrite_doc(broken, None)


def test_check_docs_fails_on_a_changed_block(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "models.md"
    original = ms.DOC.read_text(encoding="utf-8")
    doc.write_text(original, encoding="utf-8")
    monkeypatch.setattr(ms, "DOC", doc)
    rows = tmp_path / "model_speed.json"
    rows.write_text(json.dumps(_data()), encoding="utf-8")
    assert ms.main(["--check-docs", "--json", str(rows)]) == 1  # the doc holds another table
    assert "stale" in capsys.readouterr().err
    assert ms.main(["--docs-only", "--json", str(rows)]) == 0
    assert ms.main(["--check-docs", "--json", str(rows)]) == 0
    rewritten = doc.read_text(encoding="utf-8")
    assert "| `small-cnn` | 32 px grey | forward | 2,012 | 1,750 | 1.15× |" in rewritten
    outside = original.split(ms.START)[0], original.split(ms.END)[1]
    assert rewritten.split(ms.START)[0] == outside[0] and rewritten.split(ms.END)[1] == outside[1]
    doc.write_text(rewritten.replace("2,012", "2,013"), encoding="utf-8")  # a hand edit
    assert ms.main(["--check-docs", "--json", str(rows)]) == 1


def test_quick_runs_write_to_tmp_and_leave_the_docs():
    args = ms.parse_args(["--quick"])
    assert (args.out, args.json, args.docs) == (ms.QUICK_MD, ms.QUICK_JSON, False)
    args = ms.parse_args([])
    assert (args.out, args.json, args.docs) == (ms.DEFAULT_MD, ms.DEFAULT_JSON, True)
    assert (args.warmup, args.min_calls, args.min_seconds) == (2, 5, 3.0)
    assert ms.parse_args(["--no-docs"]).docs is False
    with pytest.raises(SystemExit):
        ms.parse_args(["--threads", "0"])


def test_time_calls_makes_the_warm_up_and_minimum_calls():
    calls = []
    timing = ms.time_calls(lambda: calls.append(1), warmup=2, min_calls=5, min_seconds=0.0)
    assert len(calls) == 7 and timing.calls == 5 and timing.seconds >= 0
    timing = ms.time_calls(lambda: None, warmup=0, min_calls=1, min_seconds=0.02)
    assert timing.calls > 1  # kept calling until the time had passed


@pytest.mark.parametrize("pass_name", [ms.TRAIN, ms.FROZEN])
def test_the_contiguous_twin_computes_the_same_embeddings(pass_name):
    torch.manual_seed(0)
    model = ms.build(ms.Case("small-cnn", 32, pass_name), pretrained=False)
    images = ms.images_for(model, 4, seed=0)
    assert model.channels_last and model.backbone_frozen == (pass_name == ms.FROZEN)
    with torch.no_grad():
        expected = model.eval()(images)  # (4, 128)
    twin = ms.contiguous_twin(model.train())
    assert not twin.channels_last and twin.training
    assert twin.frozen_stages == model.frozen_stages
    convs = [p for p in twin.backbone.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous() for p in convs)
    with torch.no_grad():
        assert torch.allclose(twin.eval()(images), expected, atol=1e-5)
    ms.pass_call(twin, images, pass_name)()  # one training step's passes
    assert twin.training and twin.head.weight.grad is not None
    backbone_grads = [p.grad for p in twin.backbone.parameters()]
    if pass_name == ms.FROZEN:
        assert all(g is None for g in backbone_grads)
    else:
        assert all(g is not None for g in backbone_grads)


def test_the_forward_pass_runs_in_eval_mode_without_gradients():
    model = ms.build(ms.Case("small-cnn", 32, ms.FORWARD), pretrained=False)
    images = ms.images_for(model, 4, seed=0)
    ms.pass_call(model, images, ms.FORWARD)()
    assert not model.training and all(p.grad is None for p in model.parameters())
