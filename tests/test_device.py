"""Latency and energy on named microcontrollers: the profiles against the published
measurements, per-layer sums, reference kernels, refitting, and the search's use of them."""
import random

import numpy as np
import pytest

from hwnas import devices as device_lib
from hwnas.devices import DEVICE_PROFILES, TargetDevice, fit_profile
from hwnas.data.idx import SessionData
from library_nas import NAS, check_search_parameters
from hwnas.network.net import net_from_architecture

# The original toolkit's paper (arXiv 2506.10851): its int8 1-D CNN of 10.08 MFLOPs and 88.26K
# parameters on 784-byte sessions of the 12 ISCX VPN-nonVPN classes, timed on two boards.
PUBLISHED = {"STM32F746": (31.43, 7.86), "STM32F401RE": (115.40, 29.10)}
TOLERANCE = 0.05  # relative, on latency and energy


def block(filters, kernel_size, stride, padding, activation, pooling, pool_size):
    return dict(filters=filters, kernel_size=kernel_size, stride=stride, padding=padding, activation=activation,
                pooling=pooling, pool_size=pool_size, dropout_rate=0.1)


@pytest.fixture(scope="module")
def iscx_shaped_data():
    X = np.zeros((12, 784, 1), np.float32)
    Y = np.eye(12, dtype=np.float32)
    return SessionData(X, Y, X, Y)


def network(data, head, *blocks):
    return net_from_architecture({"head": head, "blocks": list(blocks)}, "/dev/null", data, {}, "int8")


@pytest.fixture(scope="module")
def paper_size_networks(iscx_shaped_data):
    """Two networks of the paper's size class (its layers are not published): the first is the
    one the profiles' conv cost was fitted on, the second a different layer mix they never saw."""
    fitted_on = network(iscx_shaped_data, "flatten", block(32, 5, 1, "same", "relu", "avg", 3),
                        block(64, 9, 1, "same", "tanh", "max", 3))
    unseen = network(iscx_shaped_data, "flatten", block(32, 3, 1, "valid", "relu", "none", 2),
                     block(32, 3, 2, "valid", "tanh", "none", 2), block(32, 9, 1, "same", "relu", "max", 2))
    for net in (fitted_on, unseen):
        n_params, _, flops = net.hw_measures()[:3]
        assert 9.9e6 <= flops <= 10.2e6 and 85_000 <= n_params <= 89_000  # 10.08 MFLOPs, 88.26K parameters
    return fitted_on, unseen


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_profiles_give_the_published_latency_and_energy_within_5_percent(name, paper_size_networks):
    published_ms, published_mj = PUBLISHED[name]
    device = TargetDevice.named(name)
    for net in paper_size_networks:
        latency_ms = device.latency_ms(net)
        assert latency_ms == pytest.approx(published_ms, rel=TOLERANCE)
        assert device.energy_mj(latency_ms) == pytest.approx(published_mj, rel=TOLERANCE)


def test_latency_is_the_sum_of_its_layers_and_the_slower_board_or_kernels_take_longer(paper_size_networks):
    net = paper_size_networks[1]
    f746 = TargetDevice.named("STM32F746")
    layers = f746.layer_latencies_ms(net)
    assert [name for name, _ in layers] == ["input", "block 0", "block 1", "block 2", "head (flatten)"]
    per_inference_ms = DEVICE_PROFILES["STM32F746"]["cycles_per_inference"] / 216e3
    assert f746.latency_ms(net) == pytest.approx(sum(ms for _, ms in layers) + per_inference_ms)
    latencies = {name: TargetDevice.named(name).latency_ms(net) for name in DEVICE_PROFILES}
    assert latencies["STM32F746"] < latencies["STM32F401RE"] < latencies["STM32L4"]
    for name in ("STM32F746", "STM32F401RE", "STM32L4"):  # TinyEngine's ~10x on MAC-bound networks
        assert 8 < latencies[f"{name}/tflm-reference"] / latencies[name] <= 10


def test_tiny_networks_pay_the_fixed_cost_per_operator(iscx_shaped_data):
    # a cost in MACs alone would underestimate them (MicroNets, MLSys 2021)
    tiny = network(iscx_shaped_data, "gap", block(4, 3, 2, "same", "relu", "max", 4),
                   block(4, 3, 2, "same", "tanh", "avg", 4))
    device = TargetDevice.named("STM32F401RE")
    profile = DEVICE_PROFILES["STM32F401RE"]
    n_ops = sum(len(layer["ops"]) for layer in tiny.cost_layers())
    assert n_ops == 1 + 2 + 3 + 4  # input reshape; conv, pool; conv, tanh, pool; reshape, mean, dense, softmax
    fixed_ms = (n_ops * profile["cycles_per_op"] + profile["cycles_per_inference"]) / 84e3
    assert fixed_ms > 0.5 * device.latency_ms(tiny)


def test_fit_profile_recovers_a_board_from_a_few_timed_models(iscx_shaped_data):
    base = DEVICE_PROFILES["STM32F401RE"]
    true_board = dict(base, cycles_per_op=5000, cycles_per_inference=40000,
                      cycles_per_unit={op: cost * 1.3 for op, cost in base["cycles_per_unit"].items()})
    board = TargetDevice("board", true_board)
    rng = random.Random(0)

    def random_network():
        blocks = [block(rng.choice([4, 8, 16, 32]), rng.choice([3, 5, 7]), rng.choice([1, 2]), "same",
                        rng.choice(["relu", "tanh"]), rng.choice(["max", "avg", "none"]), rng.choice([2, 3, 4]))
                  for _ in range(rng.randint(1, 4))]
        return network(iscx_shaped_data, rng.choice(["gap", "flatten"]), *blocks)

    timed = [(net, board.latency_ms(net)) for net in (random_network() for _ in range(6))]
    fitted = TargetDevice("fitted", fit_profile(base, timed, energies_mj=[ms * 0.25 for _, ms in timed]))
    assert fitted.profile["power_mw"] == pytest.approx(250)
    assert fitted.profile["cycles_per_op"] == pytest.approx(5000, rel=0.01)
    for net in (random_network() for _ in range(5)):  # models the fit never saw
        assert fitted.latency_ms(net) == pytest.approx(board.latency_ms(net), rel=0.01)
    one = fit_profile(base, timed[:1])  # one timed model: the per-unit costs are scaled to it
    assert TargetDevice("one", one).latency_ms(timed[0][0]) == pytest.approx(timed[0][1], rel=1e-3)
    assert base["cycles_per_op"] == 2000  # the profile given is not changed


def test_the_search_keeps_networks_within_the_energy_threshold_on_the_named_device(tmp_path, small_data):
    data, _ = small_data
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, target_device="STM32F401RE", energy_thr=0.2,
              flops_thr=None, params_thr=None, max_tens_thr=None, smart_start=False, n_child=6, seed=3)
    parent = nas.initial_parent()
    for child in [parent, *nas.new_generation(parent, data)]:
        figures = nas.figures(child)
        assert figures.energy_mj <= 0.2
        assert figures.energy_mj == pytest.approx(252.2 * figures.latency_ms / 1e3, rel=1e-3)
    check_search_parameters({"objectives": ["val_accuracy", "energy_mj", "latency_ms"]})


def test_unknown_devices_and_bad_profiles_are_named():
    with pytest.raises(ValueError, match="target_device must be 'generic' or one of .*STM32F746"):
        check_search_parameters({"target_device": "ESP32"})
    with pytest.raises(ValueError, match="device profile 'mine': clock_mhz must be a positive number"):
        check_search_parameters({"target_device": "mine",
                                 "custom_devices": {"mine": dict(DEVICE_PROFILES["STM32L4"], clock_mhz=0)}})
    assert device_lib.check_profile("broken", {"clock_mhz": 80}) != []


def test_a_board_of_ones_own_is_used_by_the_search(tmp_path, small_data):
    data, _ = small_data
    faster = dict(DEVICE_PROFILES["STM32L4"], clock_mhz=160)  # the L4 profile at twice the clock
    check_search_parameters({"target_device": "mine", "custom_devices": {"mine": faster}})
    nas = NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, target_device="mine",
              custom_devices={"mine": faster})
    parent = nas.initial_parent()
    assert nas.figures(parent).latency_ms == pytest.approx(
        TargetDevice.named("STM32L4").latency_ms(parent) / 2, rel=1e-3)
