"""The run's records on disk: the NAS log, children.csv, pareto.csv, each evaluated
network's artefacts, the saved models and the checkpoint. Only the search's driver
writes them (workers and Ray nodes return results; they never touch the run folder).

children.csv is the history of the search, one CSV record per evaluated network,
appended as each one finishes. A record may span several lines (a failure's
reason can be a multi-line error), so the file is only ever read and cut by CSV
records, never by lines.

Each trained (or failed) network's evaluation result (scores, measured figures,
trained weights, deployed flatbuffer) is written once, when it finishes, to
networks/<child_id>.pkl. The per-generation checkpoint then only says where the
search stands (generation, counts, random states, the population and the best
by their architecture and scores), so its size and write time stay flat however
many networks the run has evaluated; resume rebuilds the history from
children.csv and the network files.
"""
import csv
import dataclasses
import io
import json
import os
import pickle

from hwnas.common.files import write_atomically
from hwnas.common.log import write_line
from hwnas.evaluation.evaluate import Result, Status
from hwnas.network.encodings import PARAMETERS
from hwnas.network.figures import HardwareFigures
from hwnas.network.state import NetworkState

# pareto.csv: what a network of the front is, beside its objective values.
PARETO_FIELDS = ("child_id", "generation", *HardwareFigures.names(), "flash_measured", "ram_measured", "val_accuracy",
                 "val_f1", "test_accuracy", "deployed_test_accuracy", "architecture_text", "architecture")

# One row of the NAS log's child table; flash and RAM show the estimate / the measured value.
LOG_ROW = "{:<11} {:<7} {:<14} {:>7} {:>7} {:>10} {:>15} {:>15} {:>7} {}"
LOG_HEADER = LOG_ROW.format("child", "status", "mutation", "val_acc", "params", "FLOPs",
                            "flash B est/meas", "RAM B est/meas", "train s", "architecture")

CHECKPOINT_VERSION = 2  # 1: every network's weights inside the checkpoint (still read by resume)


@dataclasses.dataclass(frozen=True)
class SearchState:
    """Where a search stands after a finished generation: what checkpoint.pkl holds.

    Weights and deployed models are in each network's file, written once when it finished,
    and the history is children.csv, so the state does not grow with the run. population and
    absolute_best are light network states as plain data (NetworkState.light().as_dict()); best_record: the children.csv
    record of the best network so far (the console's); the random states are the search's
    stream's, Python's and NumPy's (training re-seeds TensorFlow from each network's number).
    history: a version 1 checkpoint's own history of evaluated networks (None from version 2 on).
    """
    i_gen: int
    n_evaluated: int
    n_trained: int
    search_rng: tuple
    python_random: tuple
    numpy_random: tuple
    population: list
    absolute_best: dict
    best_record: object
    failures_in_a_row: int
    elapsed_seconds: float
    history: object = None


def _migrated(saved):
    """A SearchState from what a checkpoint of any version holds (a dict): version 1 kept every
    evaluated network (evaluated_keys, evaluated_results) and, older still, a parent but no population."""
    fields = {field.name for field in dataclasses.fields(SearchState)}
    values = {name: value for name, value in saved.items() if name in fields}
    values.setdefault("n_trained", saved["n_evaluated"])
    values.setdefault("population", [saved.get("parent")])
    if saved.get("version", 1) < 2:
        values["history"] = {"evaluated_keys": saved.get("evaluated_keys", []),
                             "evaluated_results": saved.get("evaluated_results", {})}
    return SearchState(**values)


class RecordsError(RuntimeError):
    """A record file of the run folder is missing or unreadable; the message names it."""


def result_record(result):
    """What a network file holds of a Result (plain data, the status as its text: files written
    before the Status type existed read the same)."""
    return {"state": None if result.state is None else result.state.as_dict(), "status": str(result.status),
            "reason": result.reason, "flops_keras_flops": result.flops_keras_flops}


@dataclasses.dataclass(frozen=True)
class ChildRecord:
    """One evaluated network as children.csv records it: who it is and where it comes from, its
    hardware figures (estimated before training), what the deployed model measured, its scores
    and its cost. row() gives its CSV columns (columns()): the figures spread out, by name."""
    child_id: str
    generation: int
    status: str  # a hwnas.evaluation.evaluate.Status value
    mutation: str
    parents: str  # the child_ids it was made from, space-separated
    inherited_from: str
    layers_inherited: int
    input: dict  # the input stage's settings: children.csv's input_encoding, its own settings, input_length
    depth: int
    head: str
    figures: HardwareFigures
    flops_keras_flops: object  # keras-flops' count (the reference of the cost model's flops)
    flash_measured: object
    ram_measured: object
    ram_activations_measured: object
    ram_persistent_measured: object
    val_accuracy: object
    val_f1: object
    test_accuracy: object
    test_f1: object
    deployed_test_accuracy: object
    train_seconds: float
    epochs_trained: object
    rung: object
    reason: str
    adjustments: str
    architecture_text: str
    architecture: str  # Net.architecture() as JSON (hwnas.network.net.net_from_architecture reads it)

    @classmethod
    def columns(cls):
        """children.csv's columns: the input stage's and the figures' spread out."""
        spread = {"input": ("input_encoding", *PARAMETERS, "input_length"), "figures": HardwareFigures.names()}
        return tuple(name for field in dataclasses.fields(cls) for name in spread.get(field.name, (field.name,)))

    def row(self):
        """{column: value} of children.csv."""
        spread = {"input": {"input_encoding": self.input["encoding"], **{name: self.input.get(name) for name in PARAMETERS},
                            "input_length": self.input["length"]},
                  "figures": self.figures.as_dict()}
        return {name: value for field in dataclasses.fields(self)
                for name, value in spread.get(field.name, {field.name: getattr(self, field.name)}).items()}

    @classmethod
    def of(cls, child, generation, status, reason, flops_keras_flops, figures):
        """The record of an evaluated network (a Net with its results), with its HardwareFigures."""
        val, test, deployed = child.val_metrics or {}, child.test_metrics or {}, child.deployed or {}
        return cls(child.child_id, generation, str(status), child.mutation or "start", " ".join(child.parent_ids),
                   " ".join(child.inherited_from), child.layers_inherited, child.input_stage.settings(),
                   len(child.block_list), child.head,
                   figures, flops_keras_flops, deployed.get("flash_bytes"), deployed.get("arena_bytes"),
                   deployed.get("arena_activations"), deployed.get("arena_persistent"), val.get("accuracy"),
                   val.get("f1"), test.get("accuracy"), test.get("f1"), deployed.get("test_accuracy"),
                   round(child.train_seconds or 0.0, 2), child.epochs_trained, child.rung, reason,
                   child.adjustments_text(), child.architecture_text(),
                   json.dumps(child.architecture(), separators=(",", ":")))


RECORD_FIELDS = ChildRecord.columns()


def model_record(net):
    """A saved model's .json record: its architecture, figures (the cost model's) and scores as plain data."""
    figures = {name: value for name, value in net.figures().as_dict().items() if value is not None}
    return {"architecture": net.architecture(), **figures, "deploy_precision": net.deploy_precision, "val_metrics": net.val_metrics,
            "test_metrics": net.test_metrics, "deployed_measured": net.deployed,
            "trained": net.trained, "adjustments": net.adjustments_text()}


def log_row(record, val_score, with_device=False):
    """The NAS log's table row of a ChildRecord and the network's score; with_device adds its
    latency and energy on the target."""
    score = "-" if val_score is None else f"{val_score:.4f}"
    figures = record.figures
    flash_text = f"{figures.flash_size}/{record.flash_measured if record.flash_measured is not None else '-'}"
    ram_text = f"{figures.ram_size}/{record.ram_measured if record.ram_measured is not None else '-'}"
    return (LOG_ROW.format(record.child_id, record.status, record.mutation[:14], score, figures.n_params,
                           figures.flops, flash_text, ram_text, record.train_seconds, record.architecture_text)
            + (f"  [{figures.latency_ms:.2f} ms, {figures.energy_mj:.3f} mJ]" if with_device else "")
            + (f"  ({record.reason})" if record.reason else ""))


def read_rows(path):
    """The records of a CSV file of the run folder (children.csv, pareto.csv) as dicts of text, in
    order ([] when there is none). Read by CSV records: a record can span lines."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as records_file:
        return list(csv.DictReader(records_file))


class RunRecords:
    """The record files of one run folder."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.log_path = os.path.join(run_dir, "nas_log.txt")
        self.records_path = os.path.join(run_dir, "children.csv")
        self.pareto_path = os.path.join(run_dir, "pareto.csv")
        self.networks_dir = os.path.join(run_dir, "networks")
        self.models_dir = os.path.join(run_dir, "models")
        self.checkpoint_path = os.path.join(run_dir, "checkpoint.pkl")
        os.makedirs(self.models_dir, exist_ok=True)

    def log(self, message, mode="a"):
        """Writes a line to the NAS log (mode 'a' appends, 'w' starts it anew)."""
        write_line(self.log_path, message, mode)

    # ----- children.csv ------------------------------------------------------
    def append(self, record):
        """Appends one network's ChildRecord to children.csv."""
        new_file = not os.path.exists(self.records_path)
        fields = RECORD_FIELDS
        if not new_file:  # a run begun by an older version keeps its columns
            with open(self.records_path, newline="") as records_file:
                fields = next(csv.reader(records_file), RECORD_FIELDS)
        with open(self.records_path, "a", newline="") as records_file:
            writer = csv.DictWriter(records_file, fieldnames=fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(record.row())

    def read(self):
        """The records of children.csv, in order, as dicts of text ([] before the first)."""
        return read_rows(self.records_path)

    def first_records(self, n_records):
        """The first n_records records of children.csv: those a checkpoint counts (what follows
        them is the unfinished generation, possibly cut short by a crash). Raises RecordsError
        when the file is missing, holds fewer, or repeats a network."""
        if n_records and not os.path.exists(self.records_path):
            raise RecordsError(f"{self.records_path} is missing; the checkpoint counts {n_records} networks "
                               f"recorded there, so the run cannot go on from it")
        try:
            rows = self.read()[:n_records]
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise RecordsError(f"{self.records_path}: cannot be read ({error})") from None
        if len(rows) < n_records:
            raise RecordsError(f"{self.records_path} holds {len(rows)} records, the checkpoint counts "
                               f"{n_records}: the run folder's files do not belong together")
        ids = [row.get("child_id") for row in rows]
        if len(set(ids)) < len(ids):
            repeated = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
            raise RecordsError(f"{self.records_path} records {', '.join(map(str, repeated))} more than once "
                               f"(two searches wrote to this run folder at once); it cannot be resumed")
        return rows

    def keep_first(self, n_records):
        """Cuts children.csv to its first n_records records (atomically); see first_records."""
        rows = self.first_records(n_records)
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=RECORD_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.records_path, lines.getvalue())

    def has_records(self):
        return os.path.exists(self.records_path)

    def set_aside(self):
        """Renames children.csv to children_earlier.csv (children_earlier_2.csv, ... when taken), so
        a run that starts again keeps what was recorded before. Returns (the new path, its records)."""
        n_records = len(self.read())
        path, number = os.path.join(self.run_dir, "children_earlier.csv"), 1
        while os.path.exists(path):
            number += 1
            path = os.path.join(self.run_dir, f"children_earlier_{number}.csv")
        os.replace(self.records_path, path)
        return path, n_records

    def write_pareto(self, rows, fields):
        """Writes pareto.csv (atomically): rows (dicts) over fields."""
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.pareto_path, lines.getvalue())

    # ----- models --------------------------------------------------------------
    def save_model(self, net, name, generation, folder=None, device_figures=None, more=None):
        """Saves a trained net as <folder>/<name>.keras, its deployed model as
        <name>_<precision>.tflite / .h, and (in models/) <name>.json with its record,
        device_figures (its latency and energy on the target) and the fields of more."""
        folder = folder or self.models_dir
        os.makedirs(folder, exist_ok=True)
        net.save_keras(os.path.join(folder, f"{name}.keras"))
        net.save_deployed(os.path.join(folder, f"{name}_{net.deploy_precision}"))
        if folder == self.models_dir:
            write_atomically(os.path.join(folder, f"{name}.json"),
                             json.dumps(dict(model_record(net), child_id=net.child_id, generation=generation,
                                             **(device_figures or {}), **(more or {})), indent=2))

    # ----- network files -----------------------------------------------------
    def network_path(self, child_id):
        return os.path.join(self.networks_dir, f"{child_id}.pkl")

    def has_network(self, child_id):
        return os.path.exists(self.network_path(child_id))

    def save_network(self, child_id, result):
        """Writes one evaluated network's Result (hwnas.evaluation.evaluate) once, atomically."""
        os.makedirs(self.networks_dir, exist_ok=True)
        write_atomically(self.network_path(child_id), pickle.dumps(result_record(result)))

    def network_state(self, child_id):
        """The network state (Net.to_state(), with weights and deployed bytes) of child_id's result."""
        return self.load_network(child_id).state

    def check_networks(self, child_ids):
        """Raises RecordsError naming the first network file of child_ids that is missing or cannot be
        read (what a resume reads, checked before it changes anything)."""
        for child_id in child_ids:
            if not self.has_network(child_id):
                raise RecordsError(f"{self.network_path(child_id)} is missing; children.csv records {child_id} as "
                                   f"evaluated, so the run cannot go on from its checkpoint")
            self.load_network(child_id)

    def load_network(self, child_id):
        """The Result save_network wrote for child_id. Raises RecordsError naming the file."""
        path = self.network_path(child_id)
        try:
            with open(path, "rb") as network_file:
                saved = pickle.load(network_file)
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise RecordsError(f"{path}: cannot read the network's results ({error})") from error
        state = None if saved["state"] is None else NetworkState.from_dict(saved["state"])
        return Result(state, Status(saved["status"]), saved.get("reason", ""), saved.get("flops_keras_flops"))

    # ----- checkpoint --------------------------------------------------------
    def has_checkpoint(self):
        return os.path.exists(self.checkpoint_path)

    def save_checkpoint(self, state):
        """Writes a SearchState to checkpoint.pkl, atomically (as plain data with its version)."""
        saved = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
        write_atomically(self.checkpoint_path, pickle.dumps(dict(saved, version=CHECKPOINT_VERSION)))

    def load_checkpoint(self):
        """The SearchState save_checkpoint wrote (a checkpoint of an earlier version migrated).
        Raises RecordsError naming the file when it is empty, cut short, not a checkpoint, or
        lacks what resume needs."""
        try:
            with open(self.checkpoint_path, "rb") as checkpoint_file:
                saved = pickle.load(checkpoint_file)
        except Exception as error:  # unpickling garbage can raise almost anything
            raise RecordsError(f"{self.checkpoint_path}: cannot be read as a checkpoint "
                               f"({type(error).__name__}: {error}); the run cannot go on from it") from None
        needed = [field.name for field in dataclasses.fields(SearchState)
                  if field.default is dataclasses.MISSING and field.name not in ("n_trained", "population")]
        missing = needed if not isinstance(saved, dict) else [name for name in needed if name not in saved]
        if missing:
            raise RecordsError(f"{self.checkpoint_path}: not a checkpoint of this toolkit (no "
                               f"{', '.join(missing)}); the run cannot go on from it")
        return _migrated(saved)

    # ----- the data a run was searched on ---------------------------------------
    def check_data(self, fingerprint):
        """Records fingerprint (hwnas.data.idx.data_fingerprint) in data.json at a
        run's start; later, raises RecordsError when it differs from the recorded one."""
        path = os.path.join(self.run_dir, "data.json")
        if not os.path.exists(path):
            write_atomically(path, json.dumps(fingerprint, indent=2))
            return
        try:
            with open(path) as data_file:
                recorded = json.load(data_file)
        except (OSError, ValueError) as error:
            raise RecordsError(f"{path}: cannot be read ({error})") from None
        differences = [f"{name} {recorded.get(name)} then, {value} now" for name, value in fingerprint.items()
                       if recorded.get(name) != value]
        if differences:
            raise RecordsError(f"{self.run_dir} was searched on other data or another split "
                               f"({'; '.join(differences)}): a run continues only on its own data files, "
                               f"seed, test_size, num_folds and num_classes")
