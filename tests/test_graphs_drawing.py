"""graphs.drawing: a block's layered layout and its difference from its parent."""
from graphs.drawing import block_diff, layered_layout
from graphs.ir import parse_block

PARENT = """##B##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3)
3:ReLU
0->2
2->3
3->1
"""
CHILD = """##B##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=1)
4:BN
3:ReLU
0->2
2->4
4->3
3->1
0->1
"""


def test_layout_puts_each_node_below_its_inputs():
    block = parse_block(CHILD)
    pos = layered_layout(block)
    assert set(pos) == {0, 1, 2, 3, 4} and pos[0][1] == 0.0 and pos[1][1] == 1.0
    for a, b in block.edges:
        assert pos[a][1] < pos[b][1]
    assert all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in pos.values())


def test_diff_names_added_changed_and_removed_parts():
    d = block_diff(parse_block(PARENT), parse_block(CHILD))
    assert d.added_nodes == {4} and d.changed_nodes == {2} and d.removed_nodes == set()
    assert d.added_edges == {(2, 4), (4, 3), (0, 1)} and d.removed_edges == {(2, 3)}
    assert d.summary() == "1 node(s) added, 1 changed, 3 edge(s) added, 1 edge(s) removed"
    back = block_diff(parse_block(CHILD), parse_block(PARENT))
    assert back.removed_nodes == {4} and back.removed_edges == d.added_edges
    assert block_diff(parse_block(PARENT), parse_block(PARENT)).empty



def test_a_block_rebuilt_with_new_ids_is_matched_by_shape():
    renumbered = """##B##
0:input
1:output
7:Conv2d(out_channels=C,kernel_size=3)
5:ReLU
0->7
7->5
5->1
"""
    d = block_diff(parse_block(PARENT), parse_block(renumbered))
    assert d.empty, d  # by id: 2 nodes added and 2 removed; by shape: the same block
    one_more = renumbered.replace("5->1\n", "5->1\n0->1\n")
    assert block_diff(parse_block(PARENT), parse_block(one_more)).summary() == "1 edge(s) added"
