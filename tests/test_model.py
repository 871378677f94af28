import numpy as np
import pytest
import torch

from tinc.allocation import TreePlan, plan_tree
from tinc.config import TincConfig
from tinc.model import TreeINR, count_parameters
from tinc.partition import TreeLayout, choose_splits


def per_node_reference(model: TreeINR, coords: torch.Tensor) -> torch.Tensor:
    """The tree evaluated leaf by leaf along its root-to-leaf path, the slow obvious way."""
    plan = model.plan
    outputs = []
    for leaf in range(plan.layout.leaves):
        path, node = [], leaf
        for level in range(plan.depth, 0, -1):
            path.append(node)
            node //= plan.layout.children[level - 1]
        path = [0] + path[::-1]
        h, index = coords, 0
        for level, node in enumerate(path):
            fan_in = h.shape[1]
            for _ in range(plan.layers[level]):
                width = int(plan.widths[level][node])
                weight = model.weights[index][node][:fan_in, :width]
                bias = model.biases[index][node][0, :width]
                h = torch.sin(model.w0 * (h @ weight + bias))
                fan_in = width
                index += 1
        outputs.append(h @ model.weights[index][leaf][: h.shape[1]] + model.biases[index][leaf])
    return torch.stack(outputs)


def unequal_plan() -> TreePlan:
    layout = TreeLayout((16, 16, 16), choose_splits((16, 16, 16), 2))
    rng = np.random.default_rng(1)
    widths = tuple(rng.integers(3, 9, size=n) for n in layout.nodes_per_level)
    return TreePlan(layout, (2, 1, 2), widths, 2)


def test_batched_levels_equal_the_per_node_loop():
    torch.manual_seed(0)
    model = TreeINR(unequal_plan())
    coords = torch.rand(50, 3) * 2 - 1
    assert torch.allclose(model(coords), per_node_reference(model, coords), atol=1e-5)


def test_parameter_count_matches_the_plan_and_padding_stays_zero():
    plan = unequal_plan()
    model = TreeINR(plan)
    assert count_parameters(model) == plan.params
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    coords = torch.rand(64, 3) * 2 - 1
    for _ in range(3):
        loss = model(coords).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # padded entries receive no gradient, so they never leave zero
    for index in range(model.n_layers):
        weight_mask, bias_mask = model.masks(index)
        assert torch.all(model.weights[index][weight_mask == 0] == 0)
        assert torch.all(model.biases[index][bias_mask == 0] == 0)


def test_render_in_chunks_matches_one_pass():
    plan, _ = plan_tree((32, 32, 32), 6000, TincConfig(levels=1), 1)
    model = TreeINR(plan)
    coords = torch.as_tensor(plan.layout.block_coordinates())
    assert torch.allclose(model.render(coords, max_elements=5000), model(coords).detach(), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_step_and_render_match_cpu():
    plan, _ = plan_tree((32, 32, 32), 6000, TincConfig(levels=1), 1)
    cpu = TreeINR(plan, generator=torch.Generator().manual_seed(0))
    gpu = TreeINR(plan, generator=torch.Generator().manual_seed(0)).cuda()
    coords = torch.rand(256, 3) * 2 - 1
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = model(coords.to(device)).square().mean()
        loss.backward()
        optimiser.step()
    grid = torch.as_tensor(plan.layout.block_coordinates())
    assert torch.allclose(gpu.render(grid.cuda()).cpu(), cpu.render(grid), atol=1e-4)
