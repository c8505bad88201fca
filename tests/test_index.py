"""The faiss index of a gallery: exact and approximate search, the folder, append, the CLI.

Everything runs on real faiss and a real (tiny) trained run on the glyph folder.
"""

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sampling_matters import index
from sampling_matters._optional import MissingExtraError
from sampling_matters.cli import main
from sampling_matters.index import calibrate, factory, gallery, store

pytest.importorskip("faiss")


def unit(x):
    return torch.nn.functional.normalize(x, dim=1)


def clustered(n_classes, per_class, dim, spread, seed):
    """Unit points around unit class centres, as a trained embedding's (and their labels)."""
    g = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(n_classes, dim, generator=g))  # (C, D)
    labels = torch.arange(n_classes).repeat_interleave(per_class)  # (N,)
    noise = spread / math.sqrt(dim) * torch.randn(len(labels), dim, generator=g)
    return unit(centres[labels] + noise), labels


def brute_force(gallery_x, queries, k):
    """(distances, ids) of the k nearest by a full distance matrix, nearest first."""
    found = torch.cdist(unit(queries), gallery_x).topk(k, largest=False)
    return found.values, found.indices


def recall_at(found, exact):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), exact.tolist())])


# --- search -------------------------------------------------------------------------------


def test_flat_search_is_exact():
    g = torch.Generator().manual_seed(0)
    x = unit(torch.randn(2000, 32, generator=g))
    queries = torch.randn(50, 32, generator=g) * 3  # not unit: normalised by search
    built = index.build(x, torch.arange(2000) % 7)
    assert built.meta["factory"] == "Flat" and built.meta["parameters"] == ""
    distances, ids = built.search(queries, 10)
    want_d, want_i = brute_force(x, queries, 10)
    assert distances.shape == ids.shape == (50, 10)
    assert distances.dtype == torch.float32 and ids.dtype == torch.int64
    assert torch.equal(ids, want_i)
    assert torch.allclose(distances, want_d, atol=1e-4)
    assert bool((distances[:, 1:] >= distances[:, :-1]).all())  # ascending


def test_an_indexed_vector_finds_itself_at_distance_zero_and_search_ids_leaves_it_out():
    x = unit(torch.randn(300, 16, generator=torch.Generator().manual_seed(1)))
    built = index.build(x, torch.zeros(300, dtype=torch.long))
    distances, ids = built.search(x[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4] and float(distances.max()) < 2e-3
    d, i = built.search_ids([0, 7], 4)
    want_d, want_i = brute_force(x, x[[0, 7]], 5)
    assert torch.equal(i, want_i[:, 1:]) and torch.allclose(d, want_d[:, 1:], atol=1e-4)
    assert torch.allclose(built.vectors([7]), x[[7]], atol=1e-6)


def test_k_and_query_shapes_out_of_range_are_clear_errors():
    built = index.build(unit(torch.randn(20, 8)), torch.arange(20))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 20\]"):
        built.search(unit(torch.randn(2, 8)), 21)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 20\]"):
        built.search(unit(torch.randn(2, 8)), 0)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 19\]"):
        built.search_ids([0], 20)
    with pytest.raises(ValueError, match=r"shape \(Q, 8\).*got \(2, 9\)"):
        built.search(unit(torch.randn(2, 9)), 3)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        built.search(torch.randn(8), 3)
    with pytest.raises(ValueError, match="all-zero rows"):
        built.search(torch.zeros(1, 8), 3)
    with pytest.raises(ValueError, match="ids must be in"):
        built.search_ids([20], 3)


def test_auto_rule_at_its_thresholds():
    assert factory.auto_factory(1) == "Flat"
    assert factory.auto_factory(factory.EXACT_MAX) == "Flat"
    assert factory.auto_factory(factory.EXACT_MAX + 1) == "IVF2048,Flat"
    assert factory.auto_factory(1_000_000) == "IVF4096,Flat"
    for n in (100_001, 250_000, 1_000_000, 4_000_000, 10**8):
        nlist = int(factory.auto_factory(n)[3:].split(",")[0])
        assert 4 * math.sqrt(n) <= nlist < 8 * math.sqrt(n) and nlist & (nlist - 1) == 0
    assert factory.train_size(1000, 4096) == 1000
    assert factory.train_size(10**6, 4096) == 64 * 4096
    assert factory.train_size(10**6, None) == factory.TRAIN_MIN
    with pytest.raises(ValueError, match="positive integer"):
        factory.auto_factory(0)


@pytest.fixture(scope="module")
def clusters():
    """20,000 points of 200 classes in 32 dimensions, and 200 held-out queries."""
    x, labels = clustered(200, 100, 32, 1.0, seed=2)
    queries, _ = clustered(200, 1, 32, 1.0, seed=2)
    return x, labels, queries


@pytest.mark.parametrize("choice", ["auto", "HNSW16"])
def test_approximate_indexes_find_most_true_neighbours(choice, clusters, monkeypatch):
    x, labels, queries = clusters
    # auto's IVF at this size, with as many vectors per list (78) as it has at 10⁵-10⁶ (49-244)
    monkeypatch.setattr(factory, "EXACT_MAX", 1000)
    monkeypatch.setattr(factory, "LISTS_PER_ROOT", 1)
    built = index.build(x, labels, factory=choice)
    if choice == "auto":
        assert built.meta["factory"] == "IVF256,Flat"
    if choice == "auto":
        assert built.meta["calibration"]["reached"]  # on the gallery's vectors, 95% confident
    else:
        assert built.meta["parameters"] == "efSearch=64" and built.meta["calibration"] is None
    _, ids = built.search(queries, 10)  # held-out queries: the recall carries over
    _, exact = brute_force(x, queries, 10)
    assert recall_at(ids, exact) >= 0.95


def test_a_factory_faiss_refuses_is_a_value_error():
    x = unit(torch.randn(50, 8))
    with pytest.raises(ValueError, match="could not parse"):
        index.build(x, torch.arange(50), factory="NoSuchIndex")
    with pytest.raises(ValueError, match="should be at least as large"):
        index.build(x, torch.arange(50), factory="IVF64,Flat")
    with pytest.raises(ValueError, match="leave IDMap out"):
        index.build(x, torch.arange(50), factory="IDMap,Flat")
    with pytest.raises(ValueError, match="could not set parameter"):
        index.build(x, torch.arange(50), parameters="nprobe=3")


# --- the calibrated knob --------------------------------------------------------------------


@pytest.mark.parametrize("choice", ["IVF64,Flat", "IVF64_HNSW8,Flat"])
def test_calibration_keeps_the_fewest_lists_that_reach_the_recall(choice):
    x, labels = clustered(100, 60, 16, 2.0, seed=7)  # diffuse: few lists miss neighbours
    built = index.build(x, labels, factory=choice, recall=0.9)
    measured = built.meta["calibration"]
    lows = [low for _, low in measured["tried"].values()]
    assert measured["reached"] and measured["parameters"] == built.meta["parameters"]
    assert lows[-1] == pytest.approx(measured["low"]) and measured["low"] >= 0.9
    assert all(low < 0.9 for low in lows[:-1]) and measured["recall"] > measured["low"]
    assert len(lows) >= 2  # the cheapest setting was not enough: the measurement decided
    # the recorded recall is what a search at that setting gives, leave-one-out
    rows = torch.from_numpy(np.sort(np.random.default_rng(0).choice(len(x), 1000, replace=False)))
    _, ids = built.search(x[rows], 11)
    _, exact = brute_force(x, x[rows], 11)
    without = [[i for i in row if i != r][:10] for row, r in zip(ids.tolist(), rows.tolist())]
    truth = [[i for i in row if i != r][:10] for row, r in zip(exact.tolist(), rows.tolist())]
    assert recall_at(torch.tensor(without), torch.tensor(truth)) == pytest.approx(
        measured["recall"], abs=0.01
    )


def test_calibration_reports_a_target_no_setting_reaches():
    x, labels = clustered(40, 50, 16, 2.0, seed=8)
    built = index.build(x, labels, factory="IVF16,PQ2", recall=1.0)  # 2-byte codes: lossy
    measured = built.meta["calibration"]
    assert not measured["reached"] and measured["recall"] < 1.0
    assert built.meta["parameters"] == "nprobe=16"  # the most thorough setting is kept


def test_duplicate_vectors_are_ties_not_misses():
    """A gallery of 60 vectors, each stored 20 times: any 10 copies of a query are its 10
    nearest, so the ids an IVF finds differ from the exact search's yet lose nothing."""
    distinct, _ = clustered(60, 1, 16, 0.0, seed=10)
    x = distinct.repeat_interleave(20, dim=0)  # (1200, 16) rows 20i … 20i + 19 equal
    built = index.build(x, torch.arange(60).repeat_interleave(20), factory="IVF8,Flat")
    measured = built.meta["calibration"]
    assert measured["parameters"] == "nprobe=1" and measured["recall"] == 1.0
    vectors, query = x.numpy(), x[:1].numpy()  # row 0: exact search may return 1 … 10
    kth = calibrate._kth_exact(vectors, query, 10)
    other_copies, other_vector = np.arange(10, 20)[None], np.arange(20, 30)[None]
    assert calibrate._recalls(vectors, query, other_copies, kth).tolist() == [1.0]
    assert calibrate._recalls(vectors, query, other_vector, kth).tolist() == [0.0]


def test_given_parameters_and_exact_indexes_are_not_calibrated():
    x, labels = clustered(20, 30, 8, 1.0, seed=9)
    built = index.build(x, labels, factory="IVF8,Flat", parameters="nprobe=2")
    assert built.meta["parameters"] == "nprobe=2" and built.meta["calibration"] is None
    assert index.build(x, labels).meta["calibration"] is None  # Flat: nothing to choose
    assert index.build(x, labels, factory="HNSW8").meta["calibration"] is None
    assert index.build(x[:1], labels[:1], factory="IVF1,Flat").meta["calibration"] is None
    for bad in (0.0, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"recall target must be in \(0, 1\]"):
            index.build(x, labels, factory="IVF8,Flat", recall=bad)


def test_a_gallery_without_locality_gets_a_note_that_exact_search_may_do():
    g = torch.Generator().manual_seed(0)
    uniform = unit(torch.randn(2000, 16, generator=g))  # no classes: every list is as near
    spread = index.build(uniform, torch.zeros(2000, dtype=torch.long), factory="IVF16,Flat")
    assert int(spread.meta["parameters"].split("=")[1]) >= 2  # 8 × nprobe ≥ nlist
    assert "little locality" in spread.approximate_hint()
    x, labels = clustered(100, 60, 16, 0.5, seed=7)  # tight classes: one list or two
    assert index.build(x, labels, factory="IVF64,Flat").approximate_hint() is None


def test_an_index_appended_past_twice_its_calibrated_size_suggests_measuring_again():
    x, labels = clustered(100, 60, 16, 0.5, seed=7)
    built = index.build(x[:3000], labels[:3000], factory="IVF64,Flat")
    assert built.meta["calibration"]["size"] == 3000 and built.approximate_hint() is None
    built.add(x[3000:5999], labels[3000:5999])
    assert built.approximate_hint() is None  # 5,999 < 2 × 3,000
    built.add(x[5999:], labels[5999:])
    assert "measured on 3,000 vectors and the index now holds 6,000" in built.approximate_hint()


def test_leave_one_out_drops_the_query_or_else_the_farthest():
    from sampling_matters.index.calibrate import _without_self

    ids = np.array([[5, 3, 9], [1, 2, 4], [7, -1, -1]])
    kept = _without_self(ids, np.array([3, 8, 7]), 2)
    assert kept.tolist() == [[5, 9], [1, 2], [-1, -1]]


def test_search_from_threads_while_adding():
    x = unit(torch.randn(2000, 16, generator=torch.Generator().manual_seed(3)))
    built = index.build(x[:1000], torch.zeros(1000, dtype=torch.long))
    want = built.search(x[:20], 5)
    errors = []

    def searcher():
        for _ in range(30):
            _, i = built.search(x[:20], 5)
            if not (torch.equal(i, want[1]) or bool((i >= 1000).any())):
                errors.append(i)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    for start in range(1000, 2000, 100):
        built.add(x[start : start + 100], torch.ones(100, dtype=torch.long))
    for t in threads:
        t.join()
    assert not errors and len(built) == 2000
    assert torch.equal(built.search(x[1500:1510], 1)[1][:, 0], torch.arange(1500, 1510))


# --- the folder ---------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    x, labels = clustered(10, 30, 16, 1.0, seed=4)
    items = [f"item{i}.png" for i in range(300)]
    built = index.build(x, labels, items, factory="IVF8,Flat")
    built.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == sorted(
        [store.META, *store.FILES]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary left
    loaded = index.load(tmp_path / "idx")
    assert len(loaded) == 300 and loaded.dim == 16 and loaded.items == items
    assert torch.equal(loaded.labels, labels) and torch.equal(loaded.ids, torch.arange(300))
    for key in ("factory", "parameters", "size", "faiss_version", "run", "checkpoint_sha256"):
        assert loaded.meta[key] == built.meta[key]
    assert loaded.meta["parameters"].startswith("nprobe=")
    assert loaded.meta["calibration"] == built.meta["calibration"]
    queries = unit(torch.randn(7, 16))
    for a, b in zip(built.search(queries, 5), loaded.search(queries, 5)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="holds an index already"):
        built.save(tmp_path / "idx")


def test_flat_index_is_memory_mapped_and_append_still_works(tmp_path):
    x = unit(torch.randn(120, 8, generator=torch.Generator().manual_seed(5)))
    index.build(x[:100], torch.zeros(100, dtype=torch.long)).save(tmp_path / "idx")
    loaded = index.load(tmp_path / "idx")
    assert str((tmp_path / "idx" / "index.faiss").resolve()) in Path("/proc/self/maps").read_text()
    new = loaded.add(x[100:], torch.ones(20, dtype=torch.long), [f"n{i}" for i in range(20)])
    assert new.tolist() == list(range(100, 120))
    loaded.save(tmp_path / "idx", replace=True)
    again = index.load(tmp_path / "idx")
    assert len(again) == 120 and again.items[100] == "n0" and again.items[0] == ""
    assert again.search(x[110:111], 1)[1].item() == 110
    assert int(again.labels[105]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_a_failure_midway_leaves_no_partial_folder(tmp_path, monkeypatch):
    built = index.build(unit(torch.randn(30, 8)), torch.arange(30))

    def broken(scratch, parts):
        (scratch / "index.faiss").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(store, "_write_files", broken)
    with pytest.raises(OSError, match="disk full"):
        built.save(tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    built.save(tmp_path / "idx")
    before = (tmp_path / "idx" / store.META).read_text()
    monkeypatch.setattr(store, "_write_files", broken)
    with pytest.raises(OSError):
        built.save(tmp_path / "idx", replace=True)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # the old one untouched
    assert (tmp_path / "idx" / store.META).read_text() == before


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "idx"
    index.build(unit(torch.randn(40, 8)), torch.arange(40)).save(folder)
    return folder


def rewrite_meta(folder, **changes):
    meta = json.loads((folder / store.META).read_text())
    (folder / store.META).write_text(json.dumps({**meta, **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: rewrite_meta(f, dim=9), "dimension 8 but meta.json says 9"),
        (lambda f: rewrite_meta(f, size=41), "holds 40 entries but meta.json says 41"),
        (lambda f: rewrite_meta(f, format="other 2"), "is not 'sampling-matters index 1'"),
        (lambda f: rewrite_meta(f, run=3), "'run' has the wrong type"),
        (lambda f: (f / "index.faiss").unlink(), "incomplete: it lacks index.faiss"),
        (lambda f: (f / "index.faiss").write_bytes(b"not faiss"), "faiss cannot read"),
        (lambda f: np.save(f / "labels.npy", np.zeros(39, np.int64)), "labels.npy holds 39"),
        (lambda f: np.save(f / "ids.npy", np.arange(1, 41)), "must hold 0 … N−1"),
        (lambda f: (f / "items.json").write_text("{}"), "list of strings"),
        (lambda f: (f / store.META).write_text("{"), "cannot be read as JSON"),
        (lambda f: (f / store.META).unlink(), "is not an index folder"),
    ],
)
def test_a_damaged_folder_is_a_clear_error(saved, damage, message):
    damage(saved)
    with pytest.raises(ValueError, match=message):
        index.load(saved)


def test_a_missing_folder_and_a_wrong_target():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        index.load("/nonexistent/idx")


def test_missing_faiss_names_the_index_extra(monkeypatch, tmp_path, capsys):
    def absent(module):
        raise MissingExtraError(module, ModuleNotFoundError(name="faiss"))

    monkeypatch.setattr(factory, "require", absent)
    with pytest.raises(
        MissingExtraError, match=r"^this needs faiss-cpu: .*sampling-matters\[index\]"
    ):
        index.build(unit(torch.randn(4, 3)), torch.arange(4))
    monkeypatch.undo()
    folder = tmp_path / "idx"
    index.build(unit(torch.randn(4, 3)), torch.arange(4)).save(folder)
    monkeypatch.setattr(factory, "require", absent)
    assert main(["search", str(folder), "--query", "#0"]) == 2
    assert "needs faiss-cpu: pip install 'sampling-matters[index]'" in capsys.readouterr().err


# --- a trained run: the query model and the command line ----------------------------------


@pytest.fixture(scope="module")
def run(tiny_settings, tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in tiny_settings.items()]
    assert main(["train", *flags, "--steps", "4", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def built(run):
    out = run.parent / "idx"
    assert main(["index", str(run), "--data", run_data(run), "--out", str(out), "--quiet"]) == 0
    return out


def run_data(run):
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["data"]


def test_index_records_the_run_and_queries_embed_as_the_gallery(run, built, glyph_folder):
    loaded = index.load(built)
    meta = loaded.meta
    assert len(loaded) == 48 and loaded.dim == 16 and meta["kind"] == "glyph"
    assert meta["run"] == str(run.absolute()) and meta["config"]["embedding_dim"] == 16
    assert meta["checkpoint_sha256"] == index.query.checkpoint_sha256(run / "best.pt")
    assert meta["sources"] == [{"data": f"folder:{glyph_folder}", "split": "test", "count": 48}]
    embedder = index.QueryEmbedder.for_index(loaded)
    assert embedder.dim == 16 and embedder.kind == "glyph"
    item = loaded.items[3]
    assert Path(item).is_file()
    from_file = embedder.embed_items([item])
    with Image.open(item) as opened:
        from_image = embedder.embed_images([opened.convert("RGB")])  # converted back to grey
    assert torch.allclose(from_file, loaded.vectors([3]), atol=1e-5)
    assert torch.allclose(from_image, from_file, atol=1e-6)
    assert torch.allclose(from_file.norm(dim=1), torch.ones(1))
    assert embedder.embed_images([]).shape == (0, 16)


def test_another_checkpoint_is_refused(run, built, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    state = torch.load(run / "best.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 0.01
    torch.save(state, other / "best.pt")
    with pytest.raises(ValueError, match="sha256"):
        index.QueryEmbedder.for_index(index.load(built), run=other)


def test_cli_search_an_index_by_id_and_image(built, glyph_folder, tmp_path, capsys):
    sheet = tmp_path / "x.png"
    capsys.readouterr()
    assert main(["search", str(built), "--query", "#3", "-k", "3", "--sheet", str(sheet)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "#3" and len([line for line in lines if line.startswith("  ")]) == 3
    assert all("#3 " not in line for line in lines[1:4])  # not its own neighbour
    with Image.open(sheet) as image:
        assert image.size[0] > 3 * 90 and image.size[1] >= 90
    query = next((glyph_folder / "class12").iterdir())
    argv = ["search", str(built), "--query", str(query), "-k", "2", "--sheet", str(sheet)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(query)) and str(query) not in out.split("\n", 1)[1]


def test_cli_errors_are_one_line(built, tmp_path, capsys):
    capsys.readouterr()
    assert main(["search", str(built), "--query", "#48", "-k", "3"]) == 2
    assert "ids must be in [0, 47]" in capsys.readouterr().err
    assert main(["search", str(built), "--query", "#3", "-k", "48"]) == 2
    assert "k must be in [1, 47]" in capsys.readouterr().err
    assert main(["search", str(built), "--gallery", "g.pt", "--query", "#3"]) == 2
    assert "leave --gallery out" in capsys.readouterr().err
    assert main(["search", str(tmp_path), "--query", "#3"]) == 2
    assert "no index folder" in capsys.readouterr().err


def test_cli_index_from_embeddings_then_append_continues_ids(run, built, tmp_path, capsys):
    gallery_file = tmp_path / "g.pt"
    spec = run_data(run)
    assert (
        main(["embed", str(run), "--data", spec, "--split", "train", "--out", str(gallery_file)])
        == 0
    )
    out = tmp_path / "idx"
    assert main(["index", str(run), "--embeddings", str(gallery_file), "--out", str(out)]) == 0
    from_file = index.load(out)
    assert len(from_file) == 48 and from_file.meta["sources"][0]["embeddings"] == str(gallery_file)
    capsys.readouterr()
    argv = ["index", str(run), "--data", spec, "--split", "test", "--out", str(out), "--append"]
    assert main([*argv, "--quiet"]) == 0
    assert "appended ids 48 … 95" in capsys.readouterr().out
    both = index.load(out)
    assert len(both) == 96 and both.items[48:] == index.load(built).items
    assert torch.allclose(
        both.vectors(list(range(48, 96))), index.load(built).vectors(list(range(48)))
    )
    assert main(["index", str(run), "--data", spec, "--out", str(out)]) == 2
    assert "holds an index already" in capsys.readouterr().err
    assert main([*argv, "--factory", "HNSW8"]) == 2
    assert main([*argv, "--recall", "0.9"]) == 2
    assert "--recall make a new index" in capsys.readouterr().err


def test_cli_prints_the_calibration_and_checks_the_target(run, tmp_path, capsys):
    gallery_file = tmp_path / "g.pt"
    assert main(["embed", str(run), "--data", run_data(run), "--out", str(gallery_file)]) == 0
    capsys.readouterr()
    argv = ["index", str(run), "--embeddings", str(gallery_file), "--factory", "IVF4,Flat"]
    assert main([*argv, "--recall", "0.99", "--out", str(tmp_path / "a")]) == 0
    chosen = index.load(tmp_path / "a").meta["calibration"]
    said = [line for line in capsys.readouterr().out.splitlines() if "recall@10" in line]
    assert said[0].startswith(f"{chosen['parameters']}: recall@10 {chosen['recall']:.3f} on 48 ")
    assert said[0].endswith("(target 0.99)") and len(said) == 1
    for bad in ("0", "1.5", "x"):
        with pytest.raises(SystemExit):
            main([*argv, "--recall", bad, "--out", str(tmp_path / "b")])
        assert f"must be a number in (0, 1], got '{bad}'" in capsys.readouterr().err


def test_embedding_resumes_after_an_interruption(run, tmp_path, monkeypatch):
    monkeypatch.setattr(gallery, "CHUNK", 16)  # 48 images: 3 chunks
    embedder = index.QueryEmbedder(run)
    calls = []
    real = gallery._embed_rows

    def stop_at_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(gallery, "_embed_rows", stop_at_second)
    scratch = tmp_path / ".idx.partial"
    with pytest.raises(KeyboardInterrupt):
        gallery.embed_data(embedder, run_data(run), "test", scratch=scratch, progress=False)
    assert sorted(p.name for p in scratch.glob("chunk-*")) == ["chunk-000000.pt"]
    monkeypatch.setattr(gallery, "_embed_rows", real)
    done = gallery.embed_data(embedder, run_data(run), "test", scratch=scratch, progress=False)
    assert done.resumed == 16 and done.embeddings.shape == (48, 16)
    fresh = gallery.embed_data(
        embedder, run_data(run), "test", scratch=tmp_path / "b", progress=False
    )
    assert torch.allclose(done.embeddings, fresh.embeddings) and torch.equal(
        done.labels, fresh.labels
    )
    other = gallery.embed_data(embedder, run_data(run), "train", scratch=scratch, progress=False)
    assert other.resumed == 0  # another job: its chunks start afresh
