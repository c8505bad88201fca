"""benchmarks/claims.py: docs/claims.md is a fresh generation; the verdict rule, paired by seed."""

import sys
from pathlib import Path

import pytest

from sampling_matters.tables import difference, paired

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import claims

ABOVE = [(0.90, 0.80), (0.91, 0.80), (0.89, 0.81)]  # a ahead by about 10 points each seed
SCATTERED = [(0.90, 0.80), (0.95, 0.80), (0.85, 0.80)]  # +10 on average, interval holds 0
HEADER = "loss,sampling,seed,recall@1,map@r,status\n"


def write_table(root: Path, key: str, rows: list[str], steps: int = 500) -> None:
    """An ablation table as the ablation writes it: the csv and the .md stating the budget."""
    (root / key).mkdir(parents=True)
    (root / key / "ablation.csv").write_text(HEADER + "".join(f"{row}\n" for row in rows))
    (root / key / "ablation.md").write_text(f"- budget: **{steps:,} steps** per run\n")


def table(key: str) -> claims.Table:
    return claims.Table(key, "ablation", "kanji", "a test set-up", "a test budget", "make it")


def test_the_committed_page_is_a_fresh_generation():
    assert claims.DOC.read_text() == claims.render(), (
        "docs/claims.md is stale: run .venv/bin/python benchmarks/claims.py"
    )


def test_a_clear_lead_in_the_claimed_direction_holds():
    assert claims.verdict(ABOVE, direction=1) == claims.HOLDS
    assert claims.verdict([(b, a) for a, b in ABOVE], direction=-1) == claims.HOLDS


def test_an_interval_holding_zero_is_not_distinguishable():
    assert claims.verdict(SCATTERED, direction=1) == claims.OPEN
    assert claims.verdict(SCATTERED, direction=-1) == claims.OPEN
    assert claims.verdict([(0.5, 0.5), (0.6, 0.6)], direction=1) == claims.OPEN  # no difference


def test_a_clear_lead_the_other_way_does_not_hold():
    assert claims.verdict(ABOVE, direction=-1) == claims.FAILS
    assert claims.verdict([(b, a) for a, b in ABOVE], direction=1) == claims.FAILS


def test_no_pairs_are_pending_and_one_pair_has_no_interval():
    assert claims.verdict([], direction=1) == claims.PENDING
    assert claims.verdict([(0.9, 0.8)], direction=1) == claims.ONE_SEED
    with pytest.raises(ValueError, match="at least 2 paired seeds"):
        claims.interval([1.0])


def test_a_direction_other_than_plus_or_minus_one_is_refused():
    with pytest.raises(ValueError, match="direction must be"):
        claims.verdict(ABOVE, direction=0)


@pytest.mark.parametrize("pairs", [ABOVE, SCATTERED, [(0.4, 0.45), (0.41, 0.43), (0.5, 0.2)]])
def test_the_interval_is_the_one_tables_paired_prints(pairs):
    mean, low, high = claims.interval([100 * (a - b) for a, b in pairs])
    text = paired(pairs, scale=100)
    assert text.startswith(f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]")
    assert ("not distinguishable" in text) == (claims.verdict(pairs, 1) == claims.OPEN)


def test_an_interval_that_excludes_0_never_prints_a_bound_of_0():
    # per-seed differences +1.16, +0.34, +0.29, +0.74, +0.16: the low bound is +0.03
    pairs = [(0.5 + d / 100, 0.5) for d in (1.16, 0.34, 0.29, 0.74, 0.16)]
    low = claims.interval([100 * (a - b) for a, b in pairs])[1]
    assert claims.verdict(pairs, direction=1) == claims.HOLDS and 0 < low < 0.05
    assert paired(pairs, scale=100) == f"+0.54 [{low:+.2f}, +1.05]"


def test_a_claim_on_a_table_not_yet_made_is_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    claim = claims.Claim(1, "a above b", table("not-made"), "margin + uniform", "margin + hard")
    judged = claims.judge(claim)
    assert judged.verdict == claims.PENDING and judged.pairs == ()
    row = claims._comparisons([judged])[-1]
    assert "`not-made` (pending)" in row and row.endswith("| pending |")


def test_a_claim_is_judged_on_the_seeds_both_arms_have(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    write_table(tmp_path, "grid", [
        "margin,distance-weighted,0,0.90,0.5,ok", "margin,uniform,0,0.80,0.4,ok",
        "margin,distance-weighted,1,0.91,0.5,ok", "margin,uniform,1,0.80,0.4,ok",
        "margin,distance-weighted,2,0.89,0.5,ok", "margin,uniform,2,0.81,0.4,ok",
        "margin,distance-weighted,3,nan,nan,diverged", "margin,uniform,3,0.80,0.4,ok",
    ])  # fmt: skip
    claim = claims.Claim(2, "dw above uniform", table("grid"), claims.MDW, "margin + uniform")
    judged = claims.judge(claim)
    assert judged.seeds == (0, 1, 2)  # seed 3 diverged: no finite value to pair
    assert judged.pairs == tuple(ABOVE) and judged.verdict == claims.HOLDS
    assert claims.steps(table("grid")) == 500
    row = claims._comparisons([judged])[-1]
    assert "`grid`, 500 steps" in row and "+10.00, +11.00, +8.00" in row and "| holds |" in row


def test_arms_from_two_tables_pair_by_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    write_table(tmp_path, "base", [f"margin,distance-weighted,{s},0.80,0.4,ok" for s in range(3)])
    write_table(tmp_path, "idea", [f"margin,distance-weighted,{s},0.70,0.3,ok" for s in range(3)])
    claim = claims.Claim(7, "idea above base", table("idea"), claims.MDW, claims.MDW,
                         table_b=table("base"))  # fmt: skip
    assert claims.judge(claim).verdict == claims.FAILS  # 10 points behind in every seed


def test_a_missing_arm_or_column_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    write_table(tmp_path, "grid", ["margin,uniform,0,0.80,0.4,ok"])
    with pytest.raises(ValueError, match="no arm 'triplet \\+ hard'"):
        claims.values(table("grid"), "triplet + hard")
    with pytest.raises(ValueError, match="no column 'nmi'"):
        claims.values(table("grid"), "margin + uniform", "nmi")


def test_a_caveat_replaces_the_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    write_table(tmp_path, "grid", [
        f"margin,{s},{seed},0.{80 + seed},0.4,ok" for s in ("uniform", "hard") for seed in range(3)
    ])  # fmt: skip
    claim = claims.Claim(6, "x", table("grid"), "margin + uniform", "margin + hard",
                         caveat="cannot act here")  # fmt: skip
    judged = claims.judge(claim)
    assert judged.verdict == claims.OPEN  # all differences 0
    assert claims._comparisons([judged])[-1].endswith("| no test (cannot act here) |")


def test_the_emoji_frozen_head_claim_is_not_distinguishable():
    """The issue's example: per-seed differences 0.00, −0.03, +1.18 do not make "holds"."""
    claim = next(
        c
        for c in claims.CLAIMS
        if c.table == claims.E_HEAD and c.a == claims.MDW and c.b == "margin + semihard"
    )
    judged = claims.judge(claim)
    assert claims._points([a - b for a, b in judged.pairs]) == "+0.00, -0.03, +1.18"
    assert judged.verdict == claims.OPEN


def test_the_short_kanji_beta_study_gives_per_image_no_verdict():
    (claim,) = (c for c in claims.CLAIMS if c.table == claims.B_K500 and c.a == "per-image")
    assert claim.caveat
    assert "no test" in claims._label(claims.judge(claim))


def test_the_emoji_frozen_head_tables_are_marked_below_the_floor():
    floor = claims.quality_recall("emoji", claims.FEATURES)
    assert floor == pytest.approx(0.4397)
    lines = "\n".join(claims._floors())
    assert "`ablation-emoji`: 17 of 17 arms score below R@1 44.0" in lines
    assert "**Every arm is below that floor**" in lines


def test_every_committed_set_up_with_a_floor_ends_its_comparisons_with_it():
    section = "\n".join(claims._comparisons([claims.judge(c) for c in claims._best(claims.E_HEAD)]))
    rows = section.splitlines()
    assert rows[-1].startswith("| `ablation-emoji`, 1,500 steps | the floor, no training: ")
    assert "| 44.0 |" in rows[-1] and sum("the floor" in r for r in rows) == 1
    pending = [claims.judge(c) for c in claims._best(claims.K2500, claims.K2500_MARGIN)]
    assert len(claims._comparisons(pending)) == 2 + len(pending) + claims.K2500.committed


def test_the_beyond_paper_rows_are_said_in_words_with_their_intervals(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    waiting = "pending (`ablation-kanji-2500-empirical`, `ablation-kanji-2500`)."
    assert claims._plainly()[0].endswith(waiting)
    paper = [f"margin,distance-weighted,{s},0.9{s},0.80,ok" for s in range(3)]
    write_table(tmp_path, claims.K2500.key, paper, steps=2500)
    better = [f"margin,distance-weighted,{s},0.9{s + 2},0.70,ok" for s in range(3)]
    write_table(tmp_path, claims.K2500_EMPIRICAL.key, better, steps=2500)
    (empirical, memory, emoji, _) = claims._plainly()
    assert empirical.startswith("- The empirical density, against the paper's sampling")
    assert "at 2,500 steps, 3 seeds paired: beats it in R@1 (+2.0 [+2.0, +2.0] points)" in empirical
    assert "is worse in MAP@R (-10.0 [-10.0, -10.0] points)" in empirical
    assert memory.endswith("pending (`ablation-kanji-2500-memory`).")  # the paper's is there
    assert emoji.endswith(
        "on emoji: pending (`ablation-emoji-finetune-empirical`, `ablation-emoji-finetune`)."
    )


def test_check_reports_a_stale_page(tmp_path):
    page = tmp_path / "claims.md"
    page.write_text("old\n")
    assert claims.main(["--check", "--out", str(page)]) == 1
    assert claims.main(["--out", str(page)]) == 0
    assert claims.main(["--check", "--out", str(page)]) == 0
    assert page.read_text() == claims.render()


def test_collect_copies_a_run_folders_tables_but_never_fewer_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "RESULTS", tmp_path / "results")
    grid = claims.Table("grid", "ablation", "kanji", "s", "b", "ablate --seeds 3 --out runs/grid")
    beta = claims.Table("beta-grid", "beta", "kanji", "s", "b", "beta_study.py --out runs/beta")
    monkeypatch.setattr(claims, "TABLES", (grid, beta))
    runs = tmp_path / "runs"
    write_table(runs, "grid", ["margin,uniform,0,0.80,0.4,ok", "margin,uniform,1,0.81,0.4,ok"])
    write_table(runs, "beta", ["margin,uniform,0,0.80,0.4,ok"])  # a β study writes its own
    assert claims.collect(tmp_path) == [f"copied grid (2 runs) from {runs / 'grid'}"]
    assert grid.csv.read_text() == (runs / "grid" / "ablation.csv").read_text()
    assert not (tmp_path / "results" / "beta-grid").exists()
    # a fresh run folder with one run must not replace the two committed rows
    (runs / "grid" / "ablation.csv").write_text(HEADER + "margin,uniform,0,0.70,0.4,ok\n")
    left = f"left grid: {runs / 'grid'} has fewer runs (1) than committed (2)"
    assert claims.collect(tmp_path) == [left]
    assert "0.81" in grid.csv.read_text()


def test_an_arm_its_run_has_not_reached_is_pending_and_a_misspelt_one_is_refused(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(claims, "RESULTS", tmp_path)
    write_table(tmp_path, "grid", [f"margin,distance-weighted,{s},0.80,0.4,ok" for s in range(3)])
    grid = table("grid")
    later = claims.Claim(2, "dw above uniform", grid, claims.MDW, "margin + uniform")
    monkeypatch.setattr(claims, "CLAIMS", (later,))
    monkeypatch.setattr(claims, "TABLES", (grid,))
    assert claims.judge(later).verdict == claims.PENDING
    source = claims._sources()[2]
    assert source.startswith("- `grid/ablation.csv`") and "seeds 0, 1, 2" in source
    assert source.endswith("Still to run, for its claims: the arms margin + uniform.")
    typo = claims.Claim(2, "dw above unifrom", grid, claims.MDW, "margin + unifrom")
    with pytest.raises(ValueError, match="no arm 'margin \\+ unifrom'"):
        claims.judge(typo)


def test_readmes_summary_lists_each_full_budget_comparison_once():
    judged = claims.judge_all()
    intro, _, *rows = claims.full_budget(judged)
    rows = rows[2:]  # below the header
    full = {
        (j.claim.table, j.claim.table_b, j.claim.a, j.claim.b, j.claim.metric)
        for j in judged
        if j.claim.table.budget in (claims.FULL, claims.DEMO)
    }
    assert len(rows) == len(full) > 0  # a claim shared by two sections (semi-hard) once
    assert not any(", 500 steps |" in r or ", 1,500 steps |" in r for r in rows)
    memory = next(j for j in judged if j.claim.table is claims.K2500_MEMORY)
    interval = difference(memory.pairs, scale=100)
    assert any("cross-batch memory, 2,500 steps |" in r and interval in r for r in rows)
    full_tables = [t for t in claims.TABLES if t.budget in (claims.FULL, claims.DEMO)]
    arms = sum(len(claims.read_runs(t)) for t in full_tables)
    assert f"; 0 of their {arms} arms score below the R@1 of their untrained input)" in intro
