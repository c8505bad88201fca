"""Files are written whole and read without running code."""

import pickle
import warnings

import pytest
import torch

from sampling_matters import files


class Payload:
    """A pickle that, when loaded with pickle's full power, creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"embeddings": torch.eye(2), "labels": Payload(marker)}, path)
    with pytest.raises(ValueError, match="refused"):
        files.load(path, "gallery file")
    with pytest.raises(ValueError, match="refused"):
        files.load_embeddings(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (b"not a torch file at all", "refused to load checkpoint .* not a torch file"),
    ],
)
def test_a_damaged_file_is_a_value_error_naming_it(tmp_path, content, message):
    path = tmp_path / "damaged.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as raised:
        files.load(path, "checkpoint")
    assert "damaged.pt" in str(raised.value)


def test_a_cut_file_is_a_value_error(tmp_path):
    path = tmp_path / "cut.pt"
    files.save({"x": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match=r"cut\.pt"):
        files.load(path, "checkpoint")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "not a dict"),
        ({"labels": torch.zeros(2)}, "lacks 'embeddings'"),
        ({"embeddings": torch.zeros(3), "labels": torch.zeros(3)}, r"\(N, D\)"),
        ({"embeddings": torch.full((2, 2), float("nan")), "labels": torch.zeros(2)}, "finite"),
        ({"embeddings": torch.eye(2), "labels": torch.zeros(3)}, "one label per"),
        ({"embeddings": torch.eye(2), "labels": torch.zeros(2)}, "integer class ids"),
        ({"embeddings": torch.zeros(2, 2), "labels": torch.zeros(2).long()}, "all-zero rows"),
        ({"embeddings": torch.eye(2).to_sparse(), "labels": torch.zeros(2).long()}, "dense"),
        ({"embeddings": torch.eye(2), "labels": torch.zeros(2).long(), "items": ["a"]}, "'items'"),
    ],
)
def test_an_embedding_file_is_checked_for_what_it_is(tmp_path, content, message):
    path = tmp_path / "e.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        files.load_embeddings(path)


def test_missing_and_folder_paths_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        files.load(tmp_path / "nope.pt", "checkpoint")
    with pytest.raises(FileNotFoundError, match="folder"):
        files.load(tmp_path, "checkpoint")


def test_save_leaves_no_temporary_and_round_trips(tmp_path):
    path = tmp_path / "e.pt"
    files.save_embeddings(path, torch.eye(2), torch.tensor([3, 4]))
    loaded = files.load_embeddings(path)
    assert loaded.items is None and loaded.labels.tolist() == [3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["e.pt"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_pickle_is_refused_silently_and_runs_nothing(tmp_path, protocol):
    marker, path = tmp_path / "ran", tmp_path / "plain.pt"
    with path.open("wb") as handle:
        pickle.dump(Payload(marker), handle, protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes either
        with pytest.raises(ValueError, match="refused"):
            files.load(path, "checkpoint")
    assert not marker.exists()
