import numpy as np
import pytest
import torch

from tinc.allocation import plan_tree
from tinc.tree import TreePlan
from tinc.config import TincConfig
from tinc.model import TreeINR, count_parameters
from tinc.partition import TreeLayout, choose_splits


def per_node_reference(model: TreeINR, coords: torch.Tensor) -> torch.Tensor:
    """The tree evaluated leaf by leaf along its root-to-leaf path, the slow obvious way."""
    plan = model.plan
    stored = model.split(model.flat)
    weights, biases = stored[0::2], stored[1::2]
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
                weight = weights[index][node][:fan_in, :width]
                bias = biases[index][node][0, :width]
                h = torch.sin(model.w0 * (h @ weight + bias))
                fan_in = width
                index += 1
        outputs.append(h @ weights[index][leaf][: h.shape[1]] + biases[index][leaf])
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


def test_the_canonical_form_is_the_same_function_with_sorted_non_negative_biases():
    torch.manual_seed(0)
    model = TreeINR(unequal_plan())  # three levels of unequal widths, two layers at the root and leaves
    with torch.no_grad():
        model.flat.mul_(torch.rand_like(model.flat) + 0.5)
    coords = torch.rand(200, 3) * 2 - 1
    before, flat_before = model(coords).detach(), model.flat.detach().clone()
    model.canonicalise()
    assert not torch.equal(model.flat, flat_before)
    assert torch.allclose(model(coords), before, atol=1e-5)
    for (name, values, mask), runs in zip(model.tensors(), model.bias_runs()):
        assert np.all(values[~mask] == 0), name  # padding stays in place
        if runs is not None:
            real = values[mask]
            starts = np.cumsum(runs) - runs
            assert real.min() >= 0 and np.all((np.diff(real) >= 0) | np.isin(np.arange(1, real.size), starts)), name
    # the output layer's biases (the channels) keep their order; canonical is a fixed point
    assert [runs is None for runs in model.bias_runs()] == [True, False] * (model.n_layers - 1) + [True, True]
    index, sign = model.canonical_order()
    assert torch.equal(index, torch.arange(index.numel())) and torch.all(sign == 1)


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
    stored = model.split(model.flat.detach())
    for index in range(model.n_layers):
        weight_mask, bias_mask = model.masks(index)
        assert torch.all(stored[2 * index][weight_mask == 0] == 0)
        assert torch.all(stored[2 * index + 1][bias_mask == 0] == 0)


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


def test_quantization_steps_round_the_forward_pass_and_pass_gradients_straight_through():
    from tinc.entropy import quantized_tensors

    torch.manual_seed(0)
    model = TreeINR(unequal_plan())
    coords = torch.rand(40, 3) * 2 - 1
    steps = [0.05] * (2 * model.n_layers)
    rounded = TreeINR(unequal_plan())
    with torch.no_grad():
        rounded.flat.copy_(torch.round(model.flat / 0.05) * 0.05)
    unrounded = model(coords).detach()
    output = model(coords, quantized_tensors(model, steps))
    assert torch.equal(output, rounded(coords))
    assert not torch.allclose(output, unrounded, atol=1e-3)  # the rounding does change the output
    # the latent weights get the gradient taken at the rounded ones
    output.square().sum().backward()
    rounded(coords).square().sum().backward()
    assert torch.allclose(model.flat.grad, rounded.flat.grad, atol=1e-6)
    for grad in model.split(model.flat.grad)[0::2]:
        assert grad.abs().sum() > 0


def test_weight_sensitivities_equal_the_gauss_newton_diagonal():
    from tinc.entropy import weight_sensitivities

    torch.manual_seed(0)
    model = TreeINR(unequal_plan())
    coords = torch.rand(1, 3) * 2 - 1  # one coordinate: the estimate samples exactly it
    leaves = model.plan.layout.leaves
    loss_weights = torch.rand(leaves, 1) + 0.5
    # exact: sum over every output of weight x (d output / d parameter)^2, mean over real entries
    exact = torch.zeros_like(model.flat)
    output = model(coords)
    for leaf in range(leaves):
        for channel in range(output.shape[-1]):
            grad = torch.autograd.grad(output[leaf, 0, channel], [model.flat], retain_graph=True)[0]
            exact += loss_weights[leaf, 0] * grad.square()
    exact = model.split(exact)
    masks = [mask.bool() for index in range(model.n_layers) for mask in model.masks(index)]
    expected = np.array([float(total[mask].mean()) for total, mask in zip(exact, masks)])
    estimated = weight_sensitivities(model, loss_weights, coords, samples=1, seed=0, probes=400)
    assert expected.shape == estimated.shape and (expected > 0).all()
    # random-sign probes: unbiased, a few per cent off after 400 of them
    assert np.allclose(estimated, expected, rtol=0.25)


def test_divergence_guard_restores_the_last_healthy_state_and_halves_the_rate():
    from tinc.training.policies import DivergenceGuard, HalveRateWhenDrifting, RestartWhenStuck

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = DivergenceGuard(model, optimiser, baseline=100.0)
    window = DivergenceGuard.WINDOW
    step = 0

    def run_window(loss: float) -> None:
        nonlocal step
        for _ in range(window):
            step += 1
            guard.update(torch.tensor(loss), step)

    run_window(1.0)  # healthy: snapshotted
    healthy = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # what a collapse does to the weights
    run_window(2.0)  # worse, not diverged: nothing restored, no snapshot either
    assert guard.recoveries == 0 and guard.rate_scale == 1.0
    assert not torch.equal(next(iter(model.parameters())), healthy[0])
    run_window(5.0)  # beyond DIVERGED x the best window
    assert guard.recoveries == 1 and guard.rate_scale == 0.5
    assert all(torch.equal(p, h) for p, h in zip(model.parameters(), healthy))
    run_window(float("nan"))
    assert guard.recoveries == 2 and guard.rate_scale == 0.25
    # rounded weights (quantization-aware training) raise the loss for good: not a collapse
    guard.new_objective()
    run_window(50.0)
    run_window(60.0)
    assert guard.recoveries == 2 and guard.best == 50.0


def test_the_warm_up_is_a_tenth_of_a_short_fit_or_of_the_steps_its_time_limit_allows():
    from tinc.entropy import RateTerms
    from tinc.training.loop import WARMUP_STEPS, _Fit

    plan = unequal_plan()
    coords = torch.as_tensor(plan.layout.block_coordinates())
    targets = torch.zeros(plan.layout.leaves, coords.shape[0], plan.channels)
    weights = torch.ones(targets.shape[:2])

    def run(config: TincConfig) -> _Fit:
        model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
        return _Fit(model, targets, weights, coords, config, RateTerms.for_config(config))

    assert run(TincConfig(steps=300)).warmup_steps(0.5) == 30
    timed = run(TincConfig(time_limit=60))
    timed.calls = 200  # at 0.1 of the time limit: 2000 steps in all
    assert timed.warmup_steps(0.1) == 200
    timed.calls = 5000  # 50000 in all: the full warm-up
    assert timed.warmup_steps(0.1) == WARMUP_STEPS


def test_a_fit_that_never_leaves_the_leaf_means_starts_again_at_half_the_rate():
    from tinc.training import leaf_mean_loss
    from tinc.training.policies import DivergenceGuard, RestartWhenStuck

    targets = torch.tensor([[[1.0], [3.0]], [[0.0], [0.0]]])  # leaf means 2 and 0
    weights = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    assert leaf_mean_loss(targets, weights) == pytest.approx(2 / 6)
    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    initial = [p.detach().clone() for p in model.parameters()]
    guard = DivergenceGuard(model, optimiser, baseline=1.0)
    model(torch.zeros(4, 3)).sum().backward()
    optimiser.step()  # Adam has state now, and the weights moved
    stuck = RestartWhenStuck.STUCK_STEPS
    for step in range(1, stuck + 1):
        guard.update(torch.tensor(0.9), step)  # above ESCAPED x baseline all along
    assert guard.restarts == 1 and guard.rate_scale == 0.5 and guard.restart_step == stuck
    assert all(torch.equal(p, i) for p, i in zip(model.parameters(), initial)) and not optimiser.state
    assert guard.warmup(stuck + 10, 100) == pytest.approx(0.1)  # the warm-up starts again
    for step in range(stuck + 1, stuck + 26):
        guard.update(torch.tensor(0.4), step)  # below ESCAPED x the baseline: it trains
    assert guard.escaped
    for step in range(stuck + 26, 4 * stuck):
        guard.update(torch.tensor(0.45), step)
    assert guard.restarts == 1
    late = DivergenceGuard(model, optimiser, baseline=1.0)
    for step in range(1, 4 * stuck + 1):  # just as stuck, but in the second half of its fit
        late.update(torch.tensor(0.9), step, can_restart=False)
    assert late.restarts == 0 and late.rate_scale == 1.0


def test_every_start_begins_at_the_data_mean_with_the_same_other_weights():
    from tinc.training import data_mean
    from tinc.training.starts import initial_weights

    targets = torch.tensor([[[1.0, 5.0], [3.0, 5.0]], [[0.0, -1.0], [0.0, -1.0]]])  # 2 leaves, 2 voxels, 2 channels
    weights = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(data_mean(targets, weights), torch.tensor([4 / 6, 1.0]))
    plan = unequal_plan()
    mean = torch.tensor([0.25, -0.5])
    plain = TreeINR(plan, generator=torch.Generator().manual_seed(0))
    model = TreeINR(plan, generator=torch.Generator().manual_seed(0), output_mean=mean)
    heads = plan.layout.leaves * plan.channels
    assert torch.equal(model.split(model.flat)[-1], mean.expand(plan.layout.leaves, 1, 2))
    assert torch.equal(model.flat[:-heads], plain.flat[:-heads])  # every other weight as drawn
    other = model.split(initial_weights(model, 0, 1))
    assert torch.equal(other[-1], mean.expand(plan.layout.leaves, 1, 2)) and not torch.equal(other[0], model.split(model.flat)[0])


def test_an_unfitted_file_decodes_near_the_data_mean_wherever_it_lies():
    """Data far from the middle of its range (most of it near its minimum) starts at its mean:
    from an output near 0, the middle of the range, a fit spent its first thousand steps
    getting there (the grey-matter map at 256x: 23.1 dB after 3000 steps, 29.0 from the mean)."""
    import tinc
    from tinc.chunk_starts import sample_config

    volume = np.full((32, 32, 32), 1000, dtype=np.uint16)
    volume[16:] = 3000
    volume[0, 0, 0] = 60000
    restored = tinc.decompress(tinc.compress(volume, ratio=16, levels=1, steps=0, starts=1, quiet=True))
    # an output near 0 decodes to about 30500 (the heads' random weights add some noise)
    assert abs(float(restored.mean()) - float(volume.mean())) < 1000
    # as chunked compression fits its sample chunks (`chunk_starts.sample_config`): near the middle
    config = sample_config({"ratio": 16, "levels": 1, "steps": 0, "starts": 1, "quiet": True})
    assert config["random_biases"] and config["steps"] == 0
    restored = tinc.decompress(tinc.compress(volume, **config))
    assert abs(float(restored.mean()) - 30000) < 3000


def test_a_small_network_that_levels_off_a_few_db_below_the_leaf_means_is_not_restarted():
    """anatomical.nii at 256x (one network 14 wide) levels off 3 dB below its means' loss;
    restarting it from its initial weights at half the rate lost up to 0.8 dB."""
    from tinc.training.policies import DivergenceGuard, HalveRateWhenDrifting, RestartWhenStuck

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    guard = DivergenceGuard(model, torch.optim.Adam(model.parameters(), lr=1e-3), baseline=1.0)
    for step in range(1, 4 * RestartWhenStuck.STUCK_STEPS + 1):
        guard.update(torch.tensor(0.5 if step > 100 else 1.0), step)  # flat, 3 dB below the means
    assert guard.escaped and guard.restarts == 0 and guard.rate_scale == 1.0


def test_only_trees_start_again_from_the_leaf_means(monkeypatch):
    """A restart halves the rate, which is what sticks a deep tree; a single network held at
    its means by the spread pull leaves them on its own, and a restart cost it 0.5-1.1 dB."""
    import tinc
    from tinc.training.policies import DivergenceGuard, HalveRateWhenDrifting, RestartWhenStuck

    allowed, update = {}, DivergenceGuard.update

    def recording(self, loss, step, can_restart=True):
        allowed.setdefault(self.model.plan.depth, set()).add(can_restart)
        return update(self, loss, step, can_restart)

    monkeypatch.setattr(DivergenceGuard, "update", recording)
    grid = np.indices((32, 32, 32)).sum(axis=0)
    volume = (100 + 50 * np.sin(grid / 3.0)).astype(np.uint8)
    for levels in (0, 1):
        tinc.compress(volume, ratio=4, levels=levels, steps=20, starts=1, quiet=True)
    assert allowed == {0: {False}, 1: {True, False}}  # a tree: in the first half of its fit


def test_a_fit_still_coming_down_from_far_above_the_leaf_means_is_not_restarted():
    from tinc.training.policies import DivergenceGuard, HalveRateWhenDrifting, RestartWhenStuck

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    guard = DivergenceGuard(model, torch.optim.Adam(model.parameters(), lr=1e-3), baseline=1.0)
    stuck = RestartWhenStuck.STUCK_STEPS
    assert 0.99 ** (stuck // 2 // DivergenceGuard.WINDOW) < RestartWhenStuck.FALLING
    loss = 6.0  # data scaled to 0..100 at a low rate: far above the means, falling slowly
    for step in range(1, 4 * stuck + 1):
        if step % DivergenceGuard.WINDOW == 0:
            loss *= 0.99  # 10% per half of STUCK_STEPS: more than 1 - FALLING
        guard.update(torch.tensor(loss), step)
    assert not guard.escaped and guard.restarts == 0 and guard.rate_scale == 1.0
    flat_from = 4 * stuck
    for step in range(flat_from + 1, flat_from + stuck + 1):  # then it stops falling: stuck
        guard.update(torch.tensor(loss), step)
    assert guard.restarts == 1 and guard.rate_scale == 0.5 and stuck // 2 <= guard.restart_step - flat_from <= stuck


def test_a_fit_that_drifts_back_from_its_best_for_long_gets_half_the_rate():
    from tinc.training.policies import DivergenceGuard, HalveRateWhenDrifting, RestartWhenStuck

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    guard = DivergenceGuard(model, torch.optim.Adam(model.parameters(), lr=1e-3), baseline=1.0)
    patience, drifted = HalveRateWhenDrifting.PATIENCE, HalveRateWhenDrifting.DRIFTED
    for step in range(1, 3 * patience + 1):  # noisy, never better, but near the best now and then
        guard.update(torch.tensor(0.1 * (1.0 if step % 500 < 25 else 1.2 * drifted)), step)
    assert guard.rate_scale == 1.0
    for step in range(3 * patience + 1, 5 * patience + 1):  # every window above DRIFTED x the best
        guard.update(torch.tensor(0.1 * 1.2 * drifted), step)
    assert guard.rate_scale == 0.25 and guard.recoveries == 0  # halved once per PATIENCE steps


def test_rounding_to_the_steps_keeps_the_trained_network_and_the_coder_stores_it_exactly():
    from tinc import coding
    from tinc.entropy import quantized_tensors, round_to_steps

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    steps = [coding.step_of(-1000 + coding.STEP_GRID * 3 * i) for i in range(2 * model.n_layers)]
    with torch.no_grad():  # latent weights half a step between two values, where QAT leaves many
        for view, step in zip(model.split(model.flat), steps):
            view.copy_((torch.round(view / step) + 0.5) * step)
    coords = torch.rand(64, 3) * 2 - 1
    trained = model(coords, quantized_tensors(model, steps)).detach()
    codes = [round(256 * np.log2(step)) for step in steps]

    def coded(tensors):
        stored = [v[m].copy() for _, v, m in tensors]
        return stored, coding.decode(coding.encode_with_steps(stored, codes), [len(v) for v in stored])

    latent, decoded = coded(model.tensors())
    forward = [torch.round(torch.as_tensor(v) / step).numpy() * step for v, step in zip(latent, steps)]
    assert not all(np.array_equal(d, f) for d, f in zip(decoded, forward))  # the coder alone rounds some the other way
    round_to_steps(model, steps)
    assert torch.equal(model(coords, quantized_tensors(model, steps)).detach(), trained)
    stored, decoded = coded(model.tensors())
    assert all(np.array_equal(d, v) for d, v in zip(decoded, stored))


def test_rounding_penalty_is_the_mean_squared_distance_from_the_rounded_weights_in_steps():
    from tinc import coding
    from tinc.entropy import RateTerms, round_to_steps

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    steps = [coding.step_of(-1000 + coding.STEP_GRID * 3 * i) for i in range(2 * model.n_layers)]
    masks = [mask for index in range(model.n_layers) for mask in model.masks(index)]
    with torch.no_grad():  # every real weight a quarter step above a rounded value; padding stays 0
        for view, step, mask in zip(model.split(model.flat), steps, masks):
            view.copy_((torch.round(view / step) + 0.25) * step * mask)
    rate = RateTerms(None, 0.0, 0.1, 20.0)
    rate.steps = steps
    penalty = rate.rounding_penalty(model)
    assert penalty.item() == pytest.approx(1 / 16, rel=1e-4)  # the mean over real weights, not padded ones
    penalty.backward()
    for grad, mask, step in zip(model.split(model.flat.grad), masks, steps):
        assert torch.all(grad[mask == 0] == 0)
        assert torch.allclose(grad[mask == 1], torch.full_like(grad[mask == 1], 0.5 / step / count_parameters(model)), rtol=1e-3)
    rate.steps = [step / 2 for step in steps]  # now half a step from either neighbour
    assert rate.rounding_penalty(model).item() == pytest.approx(1 / 4, rel=1e-4)
    rate.steps = steps
    round_to_steps(model, steps)
    assert rate.rounding_penalty(model).item() == 0


def test_rounding_cost_is_the_relative_rise_of_the_loss_under_rounding():
    from tinc.entropy import quantized_tensors, rounding_cost

    model = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0))
    coords = torch.rand(1, 3) * 2 - 1  # one coordinate: every sample draws it
    leaves = model.plan.layout.leaves
    targets = torch.rand(leaves, 1, 1)
    weights = torch.rand(leaves, 1) + 0.5

    def loss(stored=None) -> float:
        with torch.no_grad():
            return float(((model(coords, stored) - targets).square().mean(-1) * weights).sum())

    unrounded = loss()
    steps = [0.05] * (2 * model.n_layers)
    rounded = loss(quantized_tensors(model, steps))
    assert rounded != unrounded
    before = model.flat.detach().clone()
    assert rounding_cost(model, steps, targets, weights, coords, samples=4, seed=0) == pytest.approx(max(rounded / unrounded - 1, 0), abs=1e-4)
    assert torch.equal(model.flat, before)  # left as it was
    assert rounding_cost(model, [1e-9] * (2 * model.n_layers), targets, weights, coords, samples=4, seed=0) < 1e-5


def test_damping_settles_the_weights_near_their_rounded_values():
    from tinc.entropy import RateTerms
    from tinc.training import fit

    plan = unequal_plan()
    coords = torch.as_tensor(plan.layout.block_coordinates())
    targets = torch.sin(3 * coords.sum(-1)).expand(plan.layout.leaves, -1).unsqueeze(-1) * torch.linspace(0.2, 1, plan.layout.leaves).view(-1, 1, 1)
    weights = torch.ones(targets.shape[:2])
    steps = [0.02] * (2 * TreeINR(plan).n_layers)
    penalties = {}
    for damping in (0.0, 20.0):
        model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
        config = TincConfig(steps=200, batch=1024, qat_fraction=0.5, qat_damping=damping, quiet=True)
        rate = RateTerms.for_config(config, lambda m: steps)
        fit(model, targets, weights, coords, config, rate=rate)
        assert (rate.rounding_pull > 0) == (damping > 0)
        with torch.no_grad():
            penalties[damping] = rate.rounding_penalty(model).item()
    assert penalties[20.0] < 0.5 * penalties[0.0]


def test_first_layer_starts_below_half_the_nyquist_frequency_of_every_axis():
    from tinc.nodes.sine_mlp import NYQUIST_FRACTION, first_layer_bounds

    block, w0 = (8, 64, 64), 30.0
    bounds = first_layer_bounds(block, w0)
    nyquist = np.pi * (np.array(block) - 1) / 2
    assert np.all(w0 * bounds <= NYQUIST_FRACTION * nyquist + 1e-5)
    assert bounds[0] < 1 / 3 and np.allclose(bounds[1:], 1 / 3)  # only the thin axis is capped
    layout = TreeLayout((8, 128, 128), choose_splits((8, 128, 128), 1))
    plan, _ = plan_tree((8, 128, 128), 4000, TincConfig(levels=1), 1)
    assert plan.layout.block_shape == layout.block_shape == block
    model = TreeINR(plan, w0=w0, generator=torch.Generator().manual_seed(0))
    largest = model.split(model.flat)[0][0].abs().amax(dim=1).detach().numpy()  # per coordinate axis
    assert np.all(largest <= bounds + 1e-6) and largest[0] < 0.7 / 3


def test_several_starts_each_train_briefly_and_the_fit_continues_the_best(brain32, monkeypatch):
    from tinc import training
    from tinc.training import starts as multistart

    monkeypatch.setattr(multistart, "START_STEPS", 20)
    monkeypatch.setattr(multistart, "TRIAL_SCORE_STEPS", 5)
    config = TincConfig(steps=300, batch=1024, starts=4, quiet=True)
    assert multistart.start_steps(300, 4) == 0  # 10% of 300 steps is 7 per start: too few to rank them
    config = config.replace(steps=1000)
    assert multistart.start_steps(1000, 4) == 20 and multistart.start_steps(None, 4) == 20 and multistart.start_steps(1000, 1) == 0
    plan, _ = plan_tree((16, 16, 16), 600, config, 1)
    data = torch.as_tensor(brain32[:16, :16, :16], dtype=torch.float32) / 500 - 1
    targets = torch.as_tensor(plan.layout.to_blocks(data.numpy()[..., None]))
    weights = torch.ones(targets.shape[:2])
    coords = torch.as_tensor(plan.layout.block_coordinates())

    def fitted(model_start: int, starts: int):
        model = TreeINR(plan, generator=torch.Generator().manual_seed(config.seed))
        if model_start:
            with torch.no_grad():
                model.flat.copy_(multistart.initial_weights(model, config.seed, model_start))
        report = training.fit(model, targets, weights, coords, config.replace(starts=starts))
        return model.flat.detach().clone(), report

    several, report = fitted(0, 4)
    assert len(report.start_losses) == 4 and len(set(report.start_losses)) == 4  # other weights, other losses
    assert report.start == int(np.argmin(report.start_losses)) and report.steps == 1000
    # the winner, started alone, gives bit for bit the same fit: same samples, same schedule
    alone, single = fitted(report.start, 1)
    assert single.start_losses == [] and torch.equal(several, alone)


def test_spread_penalty_is_the_mean_log_mean_square_over_the_real_weights():
    from tinc.entropy import RateTerms

    model, rate = TreeINR(unequal_plan(), generator=torch.Generator().manual_seed(0)), RateTerms(None, 0.1, 0.1, 20.0)
    logs, counts = [], []
    for _, values, mask in model.tensors():
        real = values[mask].astype(np.float64)
        logs.append(np.log(np.mean(real**2)) * real.size)
        counts.append(real.size)
    assert rate.spread_penalty(model).item() == pytest.approx(sum(logs) / sum(counts), rel=1e-5)
    with torch.no_grad():
        model.flat.mul_(0.5)  # every spread halves: the penalty falls by log 4
    assert rate.spread_penalty(model).item() == pytest.approx(sum(logs) / sum(counts) - np.log(4), rel=1e-5)


def test_spread_penalty_narrows_quantized_weights_and_leaves_float32_ones_alone():
    from tinc.entropy import RateTerms
    from tinc.training import fit

    plan = unequal_plan()
    coords = torch.as_tensor(plan.layout.block_coordinates())
    targets = torch.sin(3 * coords.sum(-1)).expand(plan.layout.leaves, -1).unsqueeze(-1)
    weights = torch.ones(targets.shape[:2])
    spreads, flats = {}, {}
    for bits, penalty in ((5, 0.0), (5, 1.0), (32, 0.0), (32, 1.0)):
        model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
        config = TincConfig(steps=150, batch=1024, weight_bits=bits, spread_penalty=penalty, starts=1, quiet=True)
        fit(model, targets, weights, coords, config)
        with torch.no_grad():
            spreads[bits, penalty], flats[bits, penalty] = RateTerms.for_config(config).spread_penalty(model).item(), model.flat.clone()
    assert spreads[5, 1.0] < spreads[5, 0.0] - 1
    assert torch.equal(flats[32, 1.0], flats[32, 0.0])  # raw float32 weights cost the same at any spread


def test_spread_penalty_weighs_no_more_than_rounding_costs(monkeypatch):
    from tinc import training
    from tinc.entropy import RateTerms
    from tinc.training import loop

    plan = unequal_plan()
    coords = torch.as_tensor(plan.layout.block_coordinates())
    targets = torch.sin(3 * coords.sum(-1)).expand(plan.layout.leaves, -1).unsqueeze(-1)
    weights = torch.ones(targets.shape[:2])
    measured_at, rates = [], []

    def quantization(model):
        measured_at.append(rates[-1].spread_checked)
        return [0.01] * (2 * model.n_layers)

    def rate_terms(config):
        rates.append(RateTerms.for_config(config, quantization))
        return rates[-1]

    for cost, expected in ((0.03, 0.03), (0.5, 0.1)):  # cheap rounding lowers the weight; costly keeps it
        monkeypatch.setattr(loop, "rounding_cost", lambda *args, cost=cost: cost)
        model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
        config = TincConfig(steps=100, batch=1024, spread_penalty=0.1, qat_damping=0, starts=1, quiet=True)
        training.fit(model, targets, weights, coords, config, rate=rate_terms(config))
        assert rates[-1].spread_checked and rates[-1].spread_pull == expected
    assert measured_at == [False, True] * 2  # per fit: once to set the weight, once as the rounded phase begins


    measured_at.clear()  # without a rounded phase (--qat-fraction 0) the weight is still set from the cost
    monkeypatch.setattr(loop, "rounding_cost", lambda *args: 0.03)
    model = TreeINR(plan, generator=torch.Generator().manual_seed(0))
    config = TincConfig(steps=100, batch=1024, spread_penalty=0.1, qat_fraction=0, starts=1, quiet=True)
    training.fit(model, targets, weights, coords, config, rate=rate_terms(config))
    assert rates[-1].spread_checked and rates[-1].spread_pull == 0.03 and measured_at == [False]
    assert rates[-1].steps is None
