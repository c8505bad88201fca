import pytest

from sampling_matters import analysis


def test_training_curves_read_the_log_and_label_by_loss_and_sampling(tmp_path, write_run):
    run = write_run(tmp_path / "a")
    other = write_run(tmp_path / "b", loss="triplet", sampling="hard", beta="nan")
    margin, triplet = analysis.training_curves([run, other / "log.csv"])
    assert margin.label == "margin + distance-weighted" and triplet.label == "triplet + hard"
    assert margin.step.tolist() == [1, 2, 3]
    assert margin.negative_distance.tolist() == [0.8, 0.9, 1.0]
    assert margin.active_fraction.tolist() == [0.5, 0.4, 0.3]
    assert bool(triplet.beta.isnan().all())


def test_training_curves_tell_runs_with_one_label_apart(tmp_path, write_run):
    curves = analysis.training_curves([write_run(tmp_path / "x"), write_run(tmp_path / "y")])
    assert [c.label for c in curves] == [
        "margin + distance-weighted (x)",
        "margin + distance-weighted (y)",
    ]


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match=r"no log\.csv"):
        analysis.read_log(tmp_path)
    (tmp_path / "log.csv").write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match="lacks the column"):
        analysis.read_log(tmp_path)
