"""Node kinds: the registry, the kind recorded in the header, and a new kind as one class."""

import numpy as np
import pytest
import torch

from tinc import coding, container, nodes
from tinc.decoder import Decoder
from tinc.entropy import stored_tensors
from tinc.errors import TincFormatError
from tinc.format import Header, decode_header, encode_header, make_header, plan_from_header
from tinc.model import TreeINR
from tinc.nodes.sine_mlp import SineMLP
from tinc.partition import TreeLayout, choose_splits
from tinc.tree import TreePlan



class TanhMLP(SineMLP):
    """A kind that differs from the sine MLP in its activation and its scale only."""

    kind_id = 200
    name = "tanh-mlp"

    @staticmethod
    def scale(w0: float, head: bool) -> float:
        return 1.0

    @staticmethod
    def activation(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h) if torch.is_grad_enabled() else h.tanh_()


@pytest.fixture
def tanh_kind(monkeypatch):
    monkeypatch.setitem(nodes._KINDS, TanhMLP.kind_id, TanhMLP())
    return TanhMLP.kind_id


def _plan(kind: int) -> TreePlan:
    layout = TreeLayout((16, 12), choose_splits((16, 12), 1))
    return TreePlan(layout, (2, 2), (np.array([6]), np.full(layout.leaves, 5)), 1, node_kind=kind)


def test_the_sine_mlp_is_kind_0_and_an_unknown_kind_is_a_format_error():
    assert nodes.node_kind(0).name == "sine-mlp" and nodes.SINE_MLP == 0
    with pytest.raises(TincFormatError, match="node kind 7"):
        nodes.node_kind(7)
    with pytest.raises(ValueError, match="twice"):
        nodes.register(SineMLP())


def test_the_sine_mlp_kind_adds_no_byte_and_another_kind_one():
    array = np.zeros((16, 12), np.uint8)
    sine = make_header(array, _plan(0), None, (-1.0, 1.0), 30.0, 0.0, 1.0)
    other = Header.of({**sine, "node_kind": 200})
    assert len(encode_header(other)) == len(encode_header(sine)) + 1
    assert decode_header(encode_header(sine)).node_kind == 0 and decode_header(encode_header(other)).node_kind == 200
    with pytest.raises(TincFormatError, match="node kind 200"):
        plan_from_header(other)  # not registered here


def test_a_new_kind_is_one_registered_class_that_files_name_and_decoders_build(tanh_kind):
    plan = _plan(tanh_kind)
    model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
    assert isinstance(model.node, TanhMLP)
    sine = TreeINR(_plan(0), generator=torch.Generator().manual_seed(0))
    grid = torch.as_tensor(plan.layout.block_coordinates())
    assert torch.equal(sine.flat, model.flat)  # the same initial weights: only the kind's functions differ
    assert not torch.allclose(sine.render(grid), model.render(grid))
    array = np.zeros((16, 12), np.float32)
    header = make_header(array, plan, None, (-1.0, 1.0), 30.0, 0.0, 1.0)
    assert header.node_kind == tanh_kind
    data = container.pack(header, coding.encode(stored_tensors(model), None))  # float32 weights, exactly
    decoder = Decoder(data)
    assert decoder.plan.node_kind == tanh_kind and isinstance(decoder.model.node, TanhMLP)
    expected = plan.layout.from_blocks(model.render(grid).numpy())
    assert np.array_equal(decoder.network_values(), expected)
