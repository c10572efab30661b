"""The networks the search may build and the operators that make them.

SearchSpace draws random blocks and networks, mutates (add, remove or change a
block, switch the head, change the input stage), crosses two block lists over, and keeps every network
it returns within the hardware thresholds and user-defined constraints
(Constraints), checked on the analytic cost model before any Keras model is
built. Every draw comes from one random stream, so a seed gives the same
networks in the same order.
"""
import itertools
import random

from hwnas.network.block import Block
from hwnas.network.encodings import BY_DEFAULT as ENCODINGS_BY_DEFAULT
from hwnas.network.encodings import ENCODINGS, PARAMETERS
from hwnas.network.encodings.base import check_byte_data, is_byte_data
from hwnas.network.figures import HardwareFigures
from hwnas.network.input_stage import InputStage
from hwnas.network.net import Net, chain_blocks
from hwnas.strategy import objectives as objectives_lib
from hwnas.strategy.inheritance import own_sources

# Each threshold parameter and the figure it limits.
HW_THRESHOLDS = HardwareFigures.thresholds()

# A small hand-crafted parent (smart_start): three conv/pool stages that shorten the
# sequence 8x, then a Flatten head. On the demo data it reaches ~0.97 test accuracy.
SMART_START_HEAD = "flatten"
SMART_START_BLOCKS = (
    dict(filters=16, kernel_size=5, stride=2, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
    dict(filters=32, kernel_size=3, stride=1, padding="same", activation="relu", pooling="max", pool_size=2),
)


class ConstraintError(RuntimeError):
    """No candidate meeting the hardware thresholds was found within the attempts allowed."""


class Constraints:
    """The hardware thresholds (None = no limit) and user-defined constraints a network must meet.

    thresholds: {threshold parameter of HW_THRESHOLDS: limit or None}.
    custom_constraints: name -> function(figures) returning True when a network passes.
    check_hw: False accepts every network.
    device: the target (hwnas.devices.TargetDevice) that latency and energy are figured on.
    """

    def __init__(self, thresholds, custom_constraints, check_hw, device):
        self.thresholds, self.custom_constraints = dict(thresholds), dict(custom_constraints or {})
        self.check_hw, self.device = check_hw, device

    def figures(self, net):
        """The hardware figures of net, by name (hwnas.strategy.objectives), from the cost model."""
        return objectives_lib.hardware_figures(net, self.device)

    def violations(self, net, smallest_seen=None):
        """Names of the thresholds and constraints net breaks, with its figure (empty when
        check_hw is off).

        smallest_seen: a dict that keeps, per threshold, the smallest figure seen
        so far, and per constraint whether any candidate passed (for the message
        when no candidate meets them).
        """
        if not self.check_hw:
            return []
        figures = self.figures(net)
        violations = []
        for name, figure_name in HW_THRESHOLDS.items():
            limit, figure = self.thresholds[name], getattr(figures, figure_name)
            if limit is None:
                continue
            if smallest_seen is not None:
                smallest_seen[name] = min(smallest_seen.get(name, figure), figure)
            if figure > limit:
                violations.append(f"{name} ({figure_name} {figure} > {limit})")
        for name, constraint in self.custom_constraints.items():
            passed = objectives_lib.check_constraint(name, constraint, figures)
            if smallest_seen is not None:
                smallest_seen[name] = smallest_seen.get(name, False) or passed
            if not passed:
                violations.append(f"constraint {name}")
        return violations

    def error(self, smallest_seen, what, n_attempts):
        """The ConstraintError for `what` after n_attempts candidates: each threshold or
        constraint no candidate met and the smallest value seen for it."""
        never_met = {name: value for name, value in smallest_seen.items()
                     if (value is False if name in self.custom_constraints else value > self.thresholds[name])}
        shown = never_met or smallest_seen

        def describe(name, value):
            if name in self.custom_constraints:
                return f"constraint {name}: {'passed by some candidate' if value else 'failed by every candidate'}"
            return f"{name} = {self.thresholds[name]}: smallest {HW_THRESHOLDS[name]} seen {value}"

        details = "; ".join(describe(name, value) for name, value in shown.items())
        if never_met:
            summary = f"No candidate met: {details}."
        else:
            summary = f"Each threshold was met by some candidate, never all at once: {details}."
        return ConstraintError(f"No candidate for {what} met the hardware thresholds in {n_attempts} attempts. "
                               f"{summary} Raise them or shrink the search space.")


class SearchSpace:
    """Input stages, block settings, heads and depths the search draws from, and its operators.

    choices: {block setting: list of values}; input_choices: {"encoding",
    "embedding_dim", "length": list of values} (lengths already placed on the data;
    None: every byte scaled, the original's one input); head_choices: heads; max_depth:
    most blocks in a network; dropout_min/max: the dropout of the first/last
    block (growing with depth in between); n_mutations: mutations per child;
    max_attempts: candidates drawn before a ConstraintError; constraints:
    Constraints; rng: the search's random.Random. data, train_settings and
    deploy_precision are given to every Net made.
    """

    def __init__(self, choices, head_choices, max_depth, dropout_min, dropout_max, n_mutations, max_attempts,
                 constraints, rng, data, train_settings, deploy_precision, input_choices=None):
        self.choices, self.head_choices = choices, list(head_choices)
        self.input_choices = input_choices or {"encoding": ["scaled"], **{name: [None] for name in PARAMETERS},
                                               "length": [data.input_shape[0]]}
        self.max_depth, self.dropout_min, self.dropout_max = max_depth, dropout_min, dropout_max
        self.n_mutations, self.max_attempts = n_mutations, max_attempts
        self.constraints, self.rng = constraints, rng
        self.data = data
        self.train_settings, self.deploy_precision = train_settings, deploy_precision
        self.proposal_pool = None  # candidates drawn per network proposed (None: the first valid one is taken)
        self.chooser = None  # function(candidates) -> the one proposed (None: the first drawn)
        self.inputs_note = ""  # what the data ruled out of the input choices, for the log

    @classmethod
    def from_settings(cls, settings, constraints, data, train_settings):
        """The space of a search's settings (hwnas.search.settings' names) on data; its random stream
        is seeded with the search's seed (mutations do not depend on what training draws).
        Raises ValueError naming the setting the data rule out (input_choices_on)."""
        choices = {"filters": list(settings["filters_choices"]), "kernel_size": list(settings["kernel_size_choices"]),
                   "stride": list(settings["stride_choices"]), "padding": ["same", "valid"],
                   "activation": list(settings["activation_choices"]), "pooling": ["none", "max", "avg"],
                   "pool_size": list(settings["pool_size_choices"])}
        inputs, inputs_note = input_choices_on(data, settings)
        space = cls(choices, settings["head_choices"], settings["max_depth"], settings["dropout_min"],
                    settings["dropout_max"], settings["n_mutations"], settings["max_attempts"], constraints,
                    random.Random(settings["seed"]), data, train_settings, settings["deploy_precision"], inputs)
        space.proposal_pool, space.inputs_note = settings["proposal_pool"], inputs_note
        return space

    # ----- networks -----------------------------------------------------------
    def new_net(self, blocks, head, data=None, input_stage=None):
        """A Net of input_stage (None: the first of every input choice), blocks (dropout set
        by depth; Net chains them on the input) and head."""
        return Net(self.with_dropout_by_depth(blocks), None, data or self.data, head=head,
                   train_settings=self.train_settings, deploy_precision=self.deploy_precision,
                   input_stage=input_stage or self.smart_start_input())

    def smart_start_network(self, input_stage=None):
        """The hand-crafted network on input_stage (None: the first of smart_start_inputs), fitted
        into the search space (smart_start_fitted)."""
        blocks, head, _ = self.smart_start_fitted()
        return self.new_net([Block(**settings, dropout_rate=0.0) for settings in blocks], head,
                            input_stage=input_stage or self.smart_start_input())

    def smart_start_fitted(self):
        """The hand-crafted blocks and head within the user's choices: each setting the choices
        do not hold becomes the nearest choice (the first, for a name), the head the first
        choice when Flatten is not one, and no more than max_depth blocks (the first ones).
        Returns (block settings, head, the changes as text: [] when it fits as it is)."""
        blocks, changes = [], []
        for index, settings in enumerate(SMART_START_BLOCKS[:self.max_depth]):
            fitted = dict(settings)
            for name, value in settings.items():
                choices = self.choices[name]
                if value not in choices:
                    fitted[name] = (min(choices, key=lambda choice: (abs(choice - value), choice))
                                    if isinstance(value, int) else choices[0])
                    changes.append(f"block {index} {name} {value} -> {fitted[name]}")
            blocks.append(fitted)
        if len(SMART_START_BLOCKS) > self.max_depth:
            changes.append(f"{len(SMART_START_BLOCKS)} blocks -> {self.max_depth} (max_depth)")
        head = SMART_START_HEAD if SMART_START_HEAD in self.head_choices else self.head_choices[0]
        if head != SMART_START_HEAD:
            changes.append(f"head {SMART_START_HEAD} -> {head}")
        return blocks, head, changes

    # ----- input stages -----------------------------------------------------------
    def smart_start_inputs(self):
        """The inputs the smart start may read, in the order it tries them: the encodings as
        the choices list them, each on the lengths from the longest (the hand-crafted blocks
        were made for whole sessions) and the embedding sizes as listed."""
        choices, stages = self.input_choices, []
        for encoding in choices["encoding"]:
            own = ENCODINGS[encoding].parameters
            for length in sorted(choices["length"], reverse=True):
                for values in itertools.product(*(choices[name] for name in own)):
                    stages.append(InputStage(encoding, length, **dict(zip(own, values))))
        return stages

    def smart_start_input(self):
        return self.smart_start_inputs()[0]

    def random_input(self):
        """An input stage drawn uniformly from the choices (no draw where there is one choice)."""
        encoding = self._draw(self.input_choices["encoding"])
        own = {name: self._draw(self.input_choices[name]) for name in ENCODINGS[encoding].parameters}
        return InputStage(encoding, self._draw(self.input_choices["length"]), **own)

    def input_settings_to_change(self, stage):
        """The input stage's settings that have another choice: what change_input may redraw."""
        return [name for name in ("encoding", "length", *stage.kind.parameters) if len(self.input_choices[name]) > 1]

    def change_input(self, stage):
        """stage with one of its settings redrawn among the other choices (a new encoding gets its
        own settings drawn)."""
        setting = self.rng.choice(self.input_settings_to_change(stage))
        value = self.rng.choice([c for c in self.input_choices[setting] if c != getattr(stage, setting)])
        if setting != "encoding":
            return stage.copy(**{setting: value})
        return stage.copy(encoding=value, **{name: self._draw(self.input_choices[name])
                                             for name in ENCODINGS[value].parameters})

    def _draw(self, choices):
        # A single choice takes no draw, so a search without input choices draws as before they existed.
        return choices[0] if len(choices) == 1 else self.rng.choice(choices)

    def random_block(self, input_size, block_index, depth):
        """A block with random settings from the choices, placed at block_index of depth blocks."""
        settings = {name: self.rng.choice(choices) for name, choices in self.choices.items()}
        return Block(**settings, dropout_rate=self.dropout_rate(block_index, depth),
                     input_size=input_size, input_channels=1, block_index=block_index)

    def random_network(self, max_depth, seen_keys, what):
        """A random valid network: depth uniform in 1..max_depth, every setting and the head
        uniform over the choices; unlike seen_keys when the attempts allow."""
        def random_candidate():
            depth = self.rng.randint(1, max_depth)
            blocks = [self.random_block(None, block_index, depth) for block_index in range(depth)]
            head = self.rng.choice(self.head_choices)
            return self.new_net(blocks, head, input_stage=self.random_input())

        return self.draw_valid(random_candidate, seen_keys, what)

    def draw_valid(self, make_candidate, seen_keys, what):
        """Calls make_candidate() until a candidate meets every threshold and constraint
        and is not in seen_keys; returns it. A valid repeat is returned only if nothing
        new is found in max_attempts tries; if no candidate is valid, raises
        ConstraintError naming `what`, each threshold or constraint no candidate met
        and the smallest value seen for it."""
        smallest_seen, valid_repeat = {}, None
        # with a chooser (the predictor, once warm): proposal_pool new candidates, it picks one; without:
        # the first, drawn as without a pool (the networks before the warm-up are a search's without one)
        pool, pool_keys = [], set()
        wanted = self.proposal_pool if self.chooser is not None and self.proposal_pool else 1
        for _ in range(self.max_attempts * wanted):
            candidate = make_candidate()
            if self.constraints.violations(candidate, smallest_seen):
                continue
            key = candidate.architecture_key()
            if key in seen_keys or key in pool_keys:
                valid_repeat = valid_repeat or candidate
                continue
            pool.append(candidate)
            pool_keys.add(key)
            if len(pool) == wanted:
                break
        if pool:
            return self.chooser(pool) if self.chooser is not None else pool[0]
        if valid_repeat is not None:
            return valid_repeat
        raise self.constraints.error(smallest_seen, what, self.max_attempts)

    def valid_mutants(self, parent, n_child, seen_keys, data=None):
        """n_child valid mutants of parent, unlike seen_keys and each other where the space allows."""
        seen_keys, children = set(seen_keys) | {parent.architecture_key()}, []
        for _ in range(n_child):
            child = self.valid_mutant(parent, seen_keys, data)
            seen_keys.add(child.architecture_key())
            children.append(child)
        return children

    def valid_mutant(self, parent, seen_keys=(), data=None):
        """A valid mutant of parent (n_mutations mutations), unlike seen_keys when the attempts allow."""
        def mutant():
            child = parent
            for _ in range(self.n_mutations):
                child = self.mutate(child, data)
            return child

        return self.draw_valid(mutant, seen_keys, f"a child of {parent.architecture_text()}")

    # ----- operators ------------------------------------------------------------
    def mutate(self, parent, data=None):
        """One mutation of parent: add, remove or change a block, switch the head, or change
        the input stage (its encoding, embedding size or length). Returns a new Net."""
        sources = own_sources(parent)
        blocks = [block.copy(layer_weights=None, source=source) for block, source in zip(parent.block_list,
                                                                                          sources["blocks"])]
        actions = ["change"]
        if len(blocks) < self.max_depth:
            actions.append("add")
        if len(blocks) > 1:
            actions.append("remove")
        if len(self.head_choices) > 1:
            actions.append("switch_head")
        if self.input_settings_to_change(parent.input_stage):
            actions.append("change_input")
        action = self.rng.choice(actions)
        head, input_stage = parent.head, parent.input_stage
        if action == "add":
            blocks = self.add_block(blocks)
        elif action == "remove":
            blocks = self.remove_block(blocks)
        elif action == "change":
            blocks = self.change_block(blocks)
        elif action == "change_input":
            input_stage = self.change_input(input_stage)
        else:
            head = self.rng.choice([choice for choice in self.head_choices if choice != parent.head])
        child = self.new_net(blocks, head, data, input_stage)
        child.input_source, child.head_source = sources["input"], sources["head"]
        # Chained mutations (n_mutations > 1) of a not yet evaluated mutant read "add+change".
        chained = parent.child_id is None and parent.mutation
        child.mutation = f"{parent.mutation}+{action}" if chained else action
        child.parent_ids = parent.parent_ids if parent.child_id is None else (parent.child_id,)
        return child

    def remove_block(self, blocks):
        index = self.rng.randrange(len(blocks))
        return blocks[:index] + blocks[index + 1:]

    def change_block(self, blocks):
        """Redraws one setting of one block."""
        index = self.rng.randrange(len(blocks))
        setting = self.rng.choice(sorted(self.choices))
        choices = [c for c in self.choices[setting] if c != getattr(blocks[index], setting)]
        if not choices:
            return list(blocks)
        changed = blocks[index].copy(**{setting: self.rng.choice(choices)})
        return blocks[:index] + [changed] + blocks[index + 1:]

    def add_block(self, blocks):
        index = self.rng.randint(0, len(blocks))
        return blocks[:index] + [self.random_block(None, index, len(blocks) + 1)] + blocks[index:]

    def crossover(self, first, second):
        """One-point crossover at block boundaries: the first blocks of `first`, then the
        last blocks of `second` (1..max_depth blocks in all), the head of either, the input
        stage of the parent that gives the first block (the block made for that input).
        Returns a new Net (its blocks chained on the input)."""
        for _ in range(self.max_attempts):
            cut_first = self.rng.randint(0, len(first.block_list))
            cut_second = self.rng.randint(0, len(second.block_list))
            blocks = first.block_list[:cut_first] + second.block_list[cut_second:]
            if 1 <= len(blocks) <= self.max_depth:
                break
        else:  # every draw was empty or too deep: keep the first parent's blocks
            blocks, cut_first, cut_second = first.block_list, len(first.block_list), len(second.block_list)
        sources = own_sources(first)["blocks"][:cut_first] + own_sources(second)["blocks"][cut_second:]
        input_giver = first if cut_first > 0 else second
        head_giver = self.rng.choice([first, second])
        child = self.new_net([block.copy(layer_weights=None, source=source) for block, source in zip(blocks, sources)],
                             head_giver.head, input_stage=input_giver.input_stage)
        child.input_source, child.head_source = own_sources(input_giver)["input"], own_sources(head_giver)["head"]
        child.mutation = "crossover"
        child.parent_ids = (first.child_id, second.child_id)
        return child

    def copy_of(self, network):
        """network's architecture as a new, untrained Net (a GA child without crossover)."""
        sources = own_sources(network)
        child = self.new_net([block.copy(layer_weights=None, source=source)
                              for block, source in zip(network.block_list, sources["blocks"])],
                             network.head, input_stage=network.input_stage)
        child.input_source, child.head_source = sources["input"], sources["head"]
        child.parent_ids = (network.child_id,)
        return child

    # ----- dropout and chaining --------------------------------------------------
    def dropout_rate(self, block_index, depth):
        # Deeper blocks see more abstract features and overfit more: dropout grows with depth.
        if depth <= 1:
            return self.dropout_min
        return round(self.dropout_min + (self.dropout_max - self.dropout_min) * block_index / (depth - 1), 3)

    def with_dropout_by_depth(self, blocks):
        """Copies of blocks with dropout_min at the first, dropout_max at the last."""
        return [block.copy(dropout_rate=self.dropout_rate(i, len(blocks))) for i, block in enumerate(blocks)]

    def chained(self, blocks):
        """Blocks re-chained on the smart start's input (what Net does for every network on its own)."""
        return chain_blocks(blocks, self.smart_start_input().placed(self.data.input_shape[0]).output_shape)


def input_choices_on(data, settings):
    """The search space's input choices on data ({"encoding", "length", and each encoding's own
    setting: its choices}) and a note on them for the log ('' when none): lengths None become the
    data's length; encodings None become every encoding the data allow (one that reads byte
    values only when the samples are bytes: said in the note). Raises ValueError naming the
    setting when a length is longer than the data's sessions, or when an encoding asked for reads
    bytes and the data are not bytes (a table of 256 rows can only look bytes up)."""
    data_length = data.input_shape[0]
    lengths = list(settings["input_length_choices"] or [data_length])
    too_long = [length for length in lengths if length > data_length]
    if too_long:
        raise ValueError(f"input_length_choices {too_long}: longer than the data's sessions ({data_length} "
                         f"bytes); a network reads at most what each session holds")
    samples, encodings, note = data.X_train[:, :max(lengths)], settings["input_encoding_choices"], ""
    if encodings is None:
        encodings = [name for name in ENCODINGS_BY_DEFAULT if not ENCODINGS[name].reads_bytes_only or is_byte_data(samples)]
        left_out = [name for name in ENCODINGS_BY_DEFAULT if name not in encodings]
        if left_out:
            note = (f"{', '.join(left_out)} left out of the inputs searched: the samples are not bytes "
                    f"(not byte values / 255)")
    for name in encodings:
        if ENCODINGS[name].reads_bytes_only:
            check_byte_data(samples, f"input_encoding_choices includes {name!r}")
    own = {name: list(settings[f"{name}_choices"]) for name in PARAMETERS}
    return {"encoding": list(encodings), **own, "length": lengths}, note
