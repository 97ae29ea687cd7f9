"""The offline designer's reasoning in the NB201 cell space (agents/offline/cell.py): reading moves
and cells back from plans and records, valuing cells by their live edges, learning from observed
deltas, and ranking only cells not known to be tried."""
import random

from agents.offline.cell import (FALLBACK_LABEL, CellChange, CellModel, Observation, apply_change, canonical,
                                 change_record, fallback_cells, live_arch, move_text, observations_from_experience,
                                 observations_from_tried, parse_move, parse_moves, rank_moves)
from graphs.space import DEFAULT_ROOT_ARCH

ROOT = canonical(DEFAULT_ROOT_ARCH)  # node 1 idle: 1<-0, 2<-1 and 3<-1 carry nothing
CONV = "nor_conv_3x3"


def test_the_root_reads_with_its_idle_node_pruned():
    assert ROOT == "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    # An op on an edge out of an idle node changes nothing: the live cell is the same.
    assert live_arch(apply_change(ROOT, (CellChange((0, 1), "none", CONV),))) == ROOT


def test_moves_are_read_back_joined_and_separated():
    a = (CellChange((0, 1), "none", CONV), CellChange((1, 2), "none", CONV))
    b = (CellChange((2, 3), CONV, "nor_conv_1x1"),)
    text = f"PLAN: {move_text(a)} => X; {FALLBACK_LABEL} {move_text(b)}"
    assert parse_moves(text) == [a, b]
    assert parse_move(text) == a


def test_a_move_cut_off_by_a_shortened_line_is_not_read():
    a = move_text((CellChange((0, 1), "none", CONV), CellChange((1, 2), "none", CONV)))
    assert parse_moves(a[:-6] + "…") == []       # the second change is cut in its op name
    assert parse_moves(a.split(" + ")[0] + " + set ed…") == []  # cut before the second change


def test_change_record_gives_move_and_cell():
    child = apply_change(ROOT, (CellChange((0, 1), "none", CONV), CellChange((1, 3), "none", CONV)))
    text = change_record(ROOT, child)
    known, obs = observations_from_experience([{"id": "r1", "type": "success", "change": text,
                                                "metrics_delta": {"valid_acc": 1.5}}])
    assert canonical(known[0]) == canonical(child)
    assert obs[0].delta == 1.5 and obs[0].before == ROOT


def test_fallback_cells_of_a_record_are_known_too():
    first = (CellChange((0, 1), "none", CONV), CellChange((1, 2), "none", CONV))
    second = (CellChange((2, 3), CONV, "nor_conv_1x1"),)
    after = apply_change(ROOT, first)
    text = f"{move_text(first)} => {after}; {FALLBACK_LABEL} {move_text(second)}"
    assert fallback_cells(text, after) == [apply_change(ROOT, second)]
    known, _ = observations_from_experience([{"id": "r", "type": "regression", "change": text,
                                              "advice": "changed validation accuracy by -0.5 points"}])
    assert apply_change(ROOT, second) in known


def test_children_lines_give_known_cells_and_deltas():
    move = (CellChange((0, 3), "skip_connect", CONV),)
    tried = (f"- #1 trained, valid_acc 69.41 (-0.8461 vs parent) | plan: STRATEGY: set_cell_edge PLAN: "
             f"{move_text(move)} => ...\n- #2 duplicate of #0 (same architecture; not trained again) | plan: none")
    known, obs = observations_from_tried(tried, ROOT)
    assert known == [apply_change(ROOT, move)]
    assert [o.delta for o in obs] == [-0.8461]


def test_with_no_evidence_the_prior_wakes_the_idle_node():
    best = rank_moves(ROOT, CellModel.fit([]), random.Random(0), want=1)[0]
    assert len(best.move) == 2 and {c.edge for c in best.move} >= {(0, 1)}
    assert all(c.new == CONV for c in best.move) and best.gain > 0


def test_an_observed_loss_lowers_the_expectation_of_that_change():
    move = (CellChange((0, 3), "skip_connect", CONV),)
    after = apply_change(ROOT, move)
    prior = CellModel.fit([])
    learned = CellModel.fit([Observation(move, -3.0, ROOT, after)] * 3)
    assert learned.expected(ROOT, after) < prior.expected(ROOT, after)
    assert learned.expected(ROOT, after) < 0


def test_ranking_skips_known_cells_and_never_repeats_a_cell():
    model = CellModel.fit([])
    first = rank_moves(ROOT, model, random.Random(1), want=30)
    cells = [c.cell for c in first]
    assert len(set(cells)) == len(cells) == 30 and ROOT not in cells
    later = rank_moves(ROOT, model, random.Random(1), known=cells[:5], want=30)
    assert not set(cells[:5]) & {c.cell for c in later}
    # Isomorphic and idle-edge variants of a known cell count as that cell.
    assert all(canonical(apply_change(ROOT, c.move)) == c.cell for c in later)


def test_ranking_is_deterministic_per_seed():
    model = CellModel.fit([])
    run = [[c.move for c in rank_moves(ROOT, model, random.Random(7), want=40)] for _ in range(2)]
    assert run[0] == run[1]


def test_when_one_and_two_edge_moves_run_out_three_edge_moves_follow():
    model = CellModel.fit([])
    near = [c.cell for c in rank_moves(ROOT, model, random.Random(0), want=10_000, max_edges=2)]
    more = rank_moves(ROOT, model, random.Random(0), known=near, want=5)
    assert len(more) == 5 and all(len(c.move) == 3 for c in more)
