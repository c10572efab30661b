"""Target devices: what one inference costs in time and energy on a named microcontroller.

A profile prices the deployed (int8 TFLite) network layer by layer: each
TFLite operator costs a fixed number of cycles plus cycles per unit of its
work (multiply-accumulates for CONV_2D and FULLY_CONNECTED, elements for the
others; hwnas.network.block.Block.deployed_ops and hwnas.network.net.Net.cost_layers say
what runs), the inference a fixed number more, and optionally cycles per FLOP
(the "generic" profile, made from clock_mhz and flops_per_cycle, is only that).
latency_ms = cycles / (clock_mhz x 1000); energy_mj = power_mw x latency_ms / 1000.

These are estimates until measured on a board: fit_profile refits a profile
from a few models timed on one's own board.
"""
import copy

import numpy as np
from scipy.optimize import nnls

from hwnas.common.numbers import is_number

OPERATORS = ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "TANH", "MEAN", "RESHAPE", "SOFTMAX",
             "GATHER")
# Operators a profile may leave out, and the one priced in their place: profiles written before
# the byte-table input (hwnas.network.input_stage) have no GATHER, which copies rows as RESHAPE copies elements.
OPTIONAL_OPERATORS = {"GATHER": "RESHAPE"}
PROFILE_KEYS = ("core", "clock_mhz", "kernels", "power_mw", "cycles_per_unit", "cycles_per_op",
                "cycles_per_inference", "cycles_per_flop", "source")

# TFLM's reference kernels against CMSIS-NN's on the same chip: the TinyEngine README
# (STM32H743) gives about 96-98 ms vs 8-9.5 ms per million MACs; we take 10x for the
# MAC operators and 3x for the element-wise ones (assumed: they gain less from SIMD).
REFERENCE_KERNEL_SLOWDOWN = {"mac": 10.0, "element": 3.0}

# CMSIS-NN int8 costs per unit of work on a Cortex-M with DSP instructions, relative
# to CONV_2D's (assumed from the kernels' inner loops: pooling reads each element
# once, TANH and SOFTMAX go through lookups and rescaling, RESHAPE is a copy, GATHER copies a
# table row per byte, whose index arithmetic costs more than the copy for rows of a few values).
_RELATIVE_UNIT_COST = {"CONV_2D": 1.0, "FULLY_CONNECTED": 1.0, "MAX_POOL_2D": 1.0, "AVERAGE_POOL_2D": 1.2,
                       "TANH": 6.0, "MEAN": 1.5, "RESHAPE": 0.25, "SOFTMAX": 150.0, "GATHER": 1.0}


def _cortex_m_profile(core, clock_mhz, conv_cycles_per_mac, power_mw, source):
    return {"core": core, "clock_mhz": clock_mhz, "kernels": "cmsis-nn", "power_mw": power_mw,
            "cycles_per_unit": {op: round(conv_cycles_per_mac * factor, 4)
                                for op, factor in _RELATIVE_UNIT_COST.items()},
            # TFLM's interpreter per operator (dispatch, quantisation parameters) and per
            # inference (Invoke, input and output copies): assumed, ~10 us and ~50 us at 200 MHz.
            "cycles_per_op": 2000, "cycles_per_inference": 10000, "cycles_per_flop": 0.0, "source": source}


DEVICE_PROFILES = {
    # STM32F746G-DISCO, Cortex-M7 at 216 MHz. The paper of the original toolkit (arXiv
    # 2506.10851) ran its int8 1-D CNN (10.08 MFLOPs, 88.26K parameters) in 31.43 ms for
    # 7.86 mJ: power = 7.86 mJ / 31.43 ms = 250.1 mW (the board, as measured there).
    # conv cycles per MAC: fit_profile on tests/test_device.py's reference network of that
    # size class (10.12 MFLOPs) and that latency.
    "STM32F746": _cortex_m_profile("Cortex-M7", 216, 1.3119, 250.1,
                                   "arXiv 2506.10851 (31.43 ms, 7.86 mJ); overheads assumed"),
    # Nucleo-F401RE, Cortex-M4 at 84 MHz: the same network in 115.40 ms for 29.10 mJ
    # (power 29.10 / 115.40 = 252.2 mW, board as measured in the paper).
    "STM32F401RE": _cortex_m_profile("Cortex-M4", 84, 1.8756, 252.2,
                                     "arXiv 2506.10851 (115.40 ms, 29.10 mJ); overheads assumed"),
    # STM32L4 (e.g. L476), Cortex-M4 at 80 MHz: cycles as the F401RE's (the same core and
    # kernels; assumed). Power: the MCU alone, about 100 uA/MHz in run mode at 3.3 V
    # (datasheet order of magnitude) = 26.4 mW. Not a board measurement: not comparable
    # with the two boards above, whose figures include the rest of the board.
    "STM32L4": _cortex_m_profile("Cortex-M4", 80, 1.8756, 26.4,
                                 "cycles as STM32F401RE (assumed); power: datasheet run mode, MCU only"),
}


def with_reference_kernels(profile):
    """The same device running TFLM's reference kernels instead of CMSIS-NN."""
    slower = copy.deepcopy(profile)
    for op, cycles in profile["cycles_per_unit"].items():
        kind = "mac" if op in ("CONV_2D", "FULLY_CONNECTED") else "element"
        slower["cycles_per_unit"][op] = round(cycles * REFERENCE_KERNEL_SLOWDOWN[kind], 4)
    slower["kernels"], slower["source"] = "tflm-reference", profile["source"] + "; reference kernels per TinyEngine's ratio"
    return slower


DEVICE_PROFILES.update({f"{name}/tflm-reference": with_reference_kernels(profile)
                        for name, profile in list(DEVICE_PROFILES.items())})


def generic_profile(clock_mhz, flops_per_cycle, power_mw):
    """A device known only by its clock, the FLOPs per cycle its kernels sustain and its power:
    latency = FLOPs / (flops_per_cycle x clock)."""
    return {"core": "generic", "clock_mhz": clock_mhz, "kernels": "any", "power_mw": power_mw,
            "cycles_per_unit": {}, "cycles_per_op": 0, "cycles_per_inference": 0,
            "cycles_per_flop": 1.0 / flops_per_cycle, "source": "clock_mhz, flops_per_cycle and power_mw"}


def check_profile(name, profile):
    """Problems (texts) of a profile given by a user."""
    if not isinstance(profile, dict):
        return [f"device profile {name!r} must be a dict with {', '.join(PROFILE_KEYS)}, got {profile!r}"]
    problems = [f"device profile {name!r} lacks {key!r}" for key in PROFILE_KEYS if key not in profile]
    if problems:
        return problems
    for key in ("clock_mhz", "power_mw"):
        if not is_number(profile[key]) or profile[key] <= 0:
            problems.append(f"device profile {name!r}: {key} must be a positive number, got {profile[key]!r}")
    for key in ("cycles_per_op", "cycles_per_inference", "cycles_per_flop"):
        if not is_number(profile[key]) or profile[key] < 0:
            problems.append(f"device profile {name!r}: {key} must be a number >= 0, got {profile[key]!r}")
    costs = profile["cycles_per_unit"]
    if not isinstance(costs, dict) or any(op not in OPERATORS or not is_number(value) or value < 0
                                          for op, value in costs.items()):
        problems.append(f"device profile {name!r}: cycles_per_unit must map operators of {OPERATORS} "
                        f"to numbers >= 0, got {costs!r}")
    elif profile["cycles_per_flop"] == 0 and set(OPERATORS) - set(OPTIONAL_OPERATORS) - set(costs):
        problems.append(f"device profile {name!r}: cycles_per_unit lacks "
                        f"{sorted(set(OPERATORS) - set(OPTIONAL_OPERATORS) - set(costs))} (or give cycles_per_flop)")
    return problems


def unit_cycles(profile, op):
    """Cycles per unit of op's work on the profile (an optional operator it leaves out is
    priced as OPTIONAL_OPERATORS says; an operator it does not price costs 0)."""
    costs = profile["cycles_per_unit"]
    return costs.get(op, costs.get(OPTIONAL_OPERATORS.get(op), 0.0))


class TargetDevice:
    """A named device profile and what it makes of a network: latency per layer, in all, energy."""

    def __init__(self, name, profile):
        problems = check_profile(name, profile)
        if problems:
            raise ValueError("; ".join(problems))
        self.name, self.profile = name, profile

    @classmethod
    def named(cls, target_device, custom_devices=None, clock_mhz=80, flops_per_cycle=1.0, power_mw=30.0):
        """The device target_device names: "generic" (from clock_mhz, flops_per_cycle, power_mw),
        a key of DEVICE_PROFILES, or of custom_devices (name -> profile, as in B01_NAS.py)."""
        if target_device == "generic":
            return cls("generic", generic_profile(clock_mhz, flops_per_cycle, power_mw))
        profiles = dict(DEVICE_PROFILES, **(custom_devices or {}))
        if target_device not in profiles:
            raise ValueError(f"target_device must be 'generic' or one of {sorted(profiles)}, got {target_device!r}")
        return cls(target_device, profiles[target_device])

    def layer_cycles(self, layer):
        profile = self.profile
        return (profile["cycles_per_flop"] * layer["flops"]
                + sum(profile["cycles_per_op"] + unit_cycles(profile, op) * work
                      for op, work in layer["ops"]))

    def layer_latencies_ms(self, net):
        """[(layer name, milliseconds)] of net's deployed layers (hwnas.network.net.Net.cost_layers)."""
        return [(layer["name"], self.layer_cycles(layer) / (self.profile["clock_mhz"] * 1e3))
                for layer in net.cost_layers()]

    def latency_ms(self, net):
        """Milliseconds of one inference: the layers' sum plus the fixed cost per inference."""
        cycles = sum(map(self.layer_cycles, net.cost_layers())) + self.profile["cycles_per_inference"]
        return cycles / (self.profile["clock_mhz"] * 1e3)

    def energy_mj(self, latency_ms):
        """Millijoules of one inference that takes latency_ms at the profile's average power."""
        return self.profile["power_mw"] * latency_ms / 1e3

    def describe(self):
        profile = self.profile
        return (f"{self.name} ({profile['core']}, {profile['clock_mhz']} MHz, {profile['kernels']} kernels, "
                f"{profile['power_mw']} mW; {profile['source']})")


def fit_profile(profile, measurements, energies_mj=None):
    """A profile refitted to models timed on one's own board.

    measurements: [(network, measured milliseconds)], networks as hwnas.network.net.Net
    (e.g. a run's saved models rebuilt by hwnas.network.net.net_from_architecture from
    their models/*.json), timed as the firmware runs them. With one measurement the per-unit costs are
    scaled; with two, the per-operator cost is fitted too; with three or more,
    also the per-inference cost (non-negative least squares). energies_mj: the
    measured energies of the same inferences, to refit the average power.
    Returns a new profile; the one given is not changed.
    """
    if not measurements:
        raise ValueError("fit_profile needs at least one (network, measured ms) pair")
    fitted = copy.deepcopy(profile)
    columns = []
    for net, _ in measurements:  # per network: cycles of its work at the profile's unit costs, operators, 1
        ops = [op for layer in net.cost_layers() for op in layer["ops"]]
        work_cycles = sum(unit_cycles(profile, op) * work for op, work in ops)
        columns.append([work_cycles, len(ops), 1.0])
    n_free = min(len(measurements), 3)
    design = np.array(columns)[:, :n_free]
    measured_cycles = np.array([ms * profile["clock_mhz"] * 1e3 for _, ms in measurements])
    if n_free < 3:  # the fixed costs not fitted stay as they were
        kept = [profile["cycles_per_op"], profile["cycles_per_inference"]][n_free - 1:]
        measured_cycles = measured_cycles - np.array(columns)[:, n_free:] @ np.array(kept)
    coefficients, _ = nnls(design, measured_cycles)
    fitted["cycles_per_unit"] = {op: round(cycles * coefficients[0], 4)
                                 for op, cycles in profile["cycles_per_unit"].items()}
    if n_free >= 2:
        fitted["cycles_per_op"] = round(float(coefficients[1]), 1)
    if n_free >= 3:
        fitted["cycles_per_inference"] = round(float(coefficients[2]), 1)
    if energies_mj is not None:
        fitted["power_mw"] = round(float(np.mean([energy / ms * 1e3 for energy, (_, ms)
                                                  in zip(energies_mj, measurements)])), 2)
    fitted["source"] = f"fitted to {len(measurements)} measured model{'s' * (len(measurements) > 1)}"
    return fitted
