"""benchmarks/demo_time.py: its report, its plan (--dry-run) and a failing stage; no real demo."""

import json
import os
import sys
from pathlib import Path

import pytest

from sampling_matters.data.cache import ENV_VAR, cache_root

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import demo_time


@pytest.fixture
def results():
    """A hand-made measurement: 2 min 6 s of set-up and 7 min 24 s of demo."""
    return {
        "date": "2030-01-02 03:04 UTC",
        "commit": "abc1234",
        "setup_s": 126.0,
        "demo_s": 444.0,
        "total_s": 570.0,
        "recall_at_1": 0.52106,
        "map_at_r": 0.37022,
        "cpu": "Test CPU 9000",
        "cpus": 2,
        "load": "0.05",
        "others_share": 0.02,
        "setup_others_share": 0.01,
        "demo_others_share": 0.03,
        "python": "Python 3.11.7 (/usr/bin/python3)",
        "data_cache": "cold (empty)",
        "downloads": "fresh",
        "download_bytes": 338 * 2**20,
        "pip_cache": "/home/u/.cache/pip",
        "pip_cache_bytes_before": 0,
        "pip_cache_bytes_after": 5 * 2**20,
        "pip_sources": ["/opt/wheels"],
    }


def test_the_page_gives_the_computed_minutes_and_the_commit(results):
    page = demo_time.render(results)
    assert "`abc1234`" in page
    assert "**9.5 min**" in page  # 570 s
    assert "| set-up | `make .venv/.demo` | 126 | 2.1 |" in page
    assert "| demo | `make demo` | 444 | 7.4 |" in page
    assert "| total |  | **570** | **9.5** |" in page
    assert "Recall@1 **0.521**, MAP@R **0.370**" in page
    assert "338 MiB" in page and "nothing before the run, 5 MiB after" in page
    assert "other processes used 2% of the CPUs" in page


def test_write_gives_the_page_and_its_json_twin(results, tmp_path):
    out = tmp_path / "deep" / "demo_time.md"
    demo_time.write(results, out)
    assert out.read_text(encoding="utf-8") == demo_time.render(results)
    twin = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert twin == results
    wanted = {"date", "commit", "setup_s", "demo_s", "total_s", "recall_at_1", "map_at_r"}
    assert wanted | {"cpu", "others_share"} <= set(twin)


def test_dry_run_prints_both_stages_with_a_fresh_cache_and_runs_nothing(capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert demo_time.main(["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    root = Path(lines[0].split()[2])
    assert not root.exists()  # the temporary folder is gone, and nothing ran in it
    assert lines[1] == f"git clone --quiet {demo_time.REPO} {root / 'clone'}"
    stages = [line for line in lines if " make " in line]
    assert [line.split(" > ")[0].rsplit(" ", 2)[1:] for line in stages] == [
        ["make", ".venv/.demo"],
        ["make", "demo"],
    ]
    for line in stages:
        assert line.startswith(f"cd {root / 'clone'} && env ") and " -u OMP_NUM_THREADS " in line
        cache = Path(line.split(f"{ENV_VAR}=")[1].split()[0])
        assert cache.parent == root and cache != cache_root()
        assert f"npm_config_cache={root / 'npm-cache'}" in line  # npm's own cache: empty too


def test_linked_downloads_point_at_the_users_tarballs(capsys):
    assert demo_time.main(["--dry-run", "--downloads", "linked"]) == 0
    links = [
        line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("ln ")
    ]
    assert len(links) == 4
    for _, _, source, target in links:
        assert Path(source).parent == cache_root() / "downloads"
        assert Path(target).name == Path(source).name and "emoji-datasource-" in target


def test_the_stage_environment_drops_what_a_new_user_lacks(tmp_path):
    plan = demo_time.Plan(tmp_path, tmp_path / "root", "linked")
    base = {"PATH": f"/venv/bin{os.pathsep}/usr/bin", "VIRTUAL_ENV": "/venv", "HOME": "/h"}
    env = demo_time.stage_env(base | {"OMP_NUM_THREADS": "1", "PYTHON": "py"}, plan)
    assert env == {"PATH": "/usr/bin", "HOME": "/h", ENV_VAR: str(plan.cache)}


def test_a_failing_stage_names_itself_and_shows_its_log(tmp_path):
    log = tmp_path / "setup.log"
    command = [sys.executable, "-c", "print('\\n'.join(map(str, range(100)))); exit(3)"]
    with pytest.raises(demo_time.StageError) as failed:
        demo_time.run_stage("setup", command, tmp_path, os.environ, log)
    message = str(failed.value)
    assert message.startswith("stage 'setup' (") and "exit status 3" in message
    assert message.endswith("\n".join(str(i) for i in range(60, 100)))  # the last 40 lines
    assert "\n59\n" not in message


def test_false_fails_and_a_passing_stage_is_timed(tmp_path):
    with pytest.raises(demo_time.StageError, match="stage 'demo' \\(false\\) failed"):
        demo_time.run_stage("demo", ["false"], tmp_path, os.environ, tmp_path / "demo.log")
    done = demo_time.run_stage("demo", ["true"], tmp_path, os.environ, tmp_path / "ok.log")
    assert done["seconds"] > 0


def test_a_run_that_left_no_index_is_refused(tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"recall@1": 0.5, "map@r": 0.25}))
    with pytest.raises(RuntimeError, match=r"index/meta\.json"):
        demo_time.read_outputs(tmp_path, since=0.0)
    (run / "index").mkdir()
    (run / "index" / "meta.json").write_text("{}")
    assert demo_time.read_outputs(tmp_path, since=0.0) == {"recall_at_1": 0.5, "map_at_r": 0.25}
    with pytest.raises(RuntimeError, match="did not write"):  # from an earlier run
        demo_time.read_outputs(tmp_path, since=(run / "metrics.json").stat().st_mtime + 60)
