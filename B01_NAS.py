"""Hardware-aware NAS for session-level traffic classification.

Edit the parameters below and run `python B01_NAS.py`; any parameter can also
be overridden on the command line: `python B01_NAS.py n_generations=5 seed=7`.
Each run writes <logs_dir>/<timestamp>_<run_name>/: nas_log.txt (for people),
children.csv (one row per evaluated network), parameters.json and models/.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: errors only

# data
images_path = "data/demo_sessions.idx3"  # IDX3 sessions, relative to this folder or absolute
labels_path = "data/demo_labels.idx1"  # IDX1 labels of the same sessions
test_images_path = None  # a data set's own test pair (e.g. USTC-TK2016's t10k files), used as it is; None: split one off the pair above
test_labels_path = None  # the labels of test_images_path
num_classes = None  # number of classes (None = max label + 1)
test_size = 0.1  # fraction of sessions held out as the test split when there is no test pair (only reported, never used to choose)
num_folds = 5  # stratified folds of the training split

# search
search_strategy = "ga"  # "ga": population genetic algorithm (NSGA-II ranking); "mutation": the specification's loop (one parent); "random": random search (a baseline)
n_generations = 3  # generations after generation 0 (the initial parent or population)
n_child = 4  # children per generation
n_mutations = 1  # mutations applied to make each child
max_depth_father = 3  # most blocks in a random initial parent (smart_start = False)
max_depth = 6  # most blocks in any network
smart_start = True  # True: start from a small hand-crafted network; False: from a random valid one
is_random_walk = False  # True: the best child always becomes the parent; False: the parent competes with its children
max_attempts = 200  # mutation attempts per child before the thresholds are declared impossible
max_failures_in_a_row = 10  # networks failing in a row (diverging loss, errors) before the search stops
time_budget_s = None  # seconds for the whole run, final training included: no network starts once they are spent; the generation closes with the networks started, everything saved (None = no limit)
max_search_sessions = 2000  # most sessions a candidate trains on in each fold (and is validated and tested on): stratified samples drawn once from the seed (None = every session)
inherit_weights = True  # True: a child starts each fold from its parent's trained weights of that fold, for the layers its mutation left unchanged
inherit_epochs = None  # most epochs a child that inherits trains (None = a third of epochs)
proposal_pool = 8  # candidates drawn per child; a predictor fitted on the networks trained picks the one to train (None = off: the first drawn)
predictor_warmup = 10  # networks trained before the predictor picks (until then, children are drawn as without a pool)
objectives = ["val_accuracy"]  # the first decides the best network (and the mutation loop's parent); the GA ranks by all (NSGA-II); pareto.csv is over all (one alone: against flash and RAM)

# population GA (search_strategy = "ga"; population_size is also random search's generation 0)
population_size = 6  # networks carried from one generation to the next; generation 0 trains this many
n_elites = 2  # best networks of the population that compete with the n_child children for the next population
tournament_size = 2  # networks drawn per tournament; the best ranked becomes a parent
crossover_rate = 0.9  # chance a child is a crossover of two parents' block lists (else a copy of one), before its n_mutations mutations
save_pareto_models = False  # True: at the end, save every network of the Pareto front in models/pareto/

# search space
input_encoding_choices = None  # what a network sees of each byte: "embedding" (a learned table of 256 rows), "scaled" (byte / 255); the smart start tries them in order (None = ["embedding", "scaled"], the table only on byte data)
embedding_dim_choices = [4, 8, 16]  # values per byte in the "embedding" encoding's table
input_length_choices = None  # bytes of each session a network reads, its first N, e.g. [784, 512, 256] (None = all the data has)
filters_choices = [4, 8, 16, 32, 64]  # Conv1D filters
kernel_size_choices = [3, 5, 7, 9]  # Conv1D kernel sizes
stride_choices = [1, 2]  # Conv1D strides
pool_size_choices = [2, 3, 4]  # pooling window (= pooling stride)
activation_choices = ["relu", "relu6", "tanh"]  # activations (all run int8 on TensorFlow Lite Micro)
head_choices = ["gap", "flatten"]  # heads: GlobalAveragePooling1D or Flatten, then Dense(num_classes)
dropout_min = 0.05  # dropout rate of the first block
dropout_max = 0.3  # dropout rate of the last block (rates in between grow with depth)

# hardware thresholds (None = no limit)
check_hw = True  # False: train children whatever their figures
params_thr = 20_000  # parameters
flops_thr = 2_000_000  # FLOPs of one inference (keras-flops' count)
flash_thr = 32_000  # bytes of flash: the TFLite flatbuffer at deploy_precision
ram_thr = 16_000  # bytes of RAM: TFLM's tensor arena (activations + persistent) at deploy_precision
max_tens_thr = 16_000  # elements of the largest activation tensor
latency_thr = None  # milliseconds of one inference on target_device (estimated by its profile)
energy_thr = None  # millijoules of one inference on target_device (its power x the latency)
target_device = "generic"  # "STM32F746", "STM32F401RE", "STM32L4" (CMSIS-NN kernels; add "/tflm-reference" for TFLM's reference kernels), a key of custom_devices, or "generic"
clock_mhz = 80  # target_device = "generic": clock of the microcontroller (MHz)
flops_per_cycle = 1.0  # target_device = "generic": FLOPs per clock cycle its kernels sustain (measure one model: FLOPs / (ms x MHz x 1000))
power_mw = 30.0  # target_device = "generic": average power during inference (mW), for energy_mj
deploy_precision = "int8"  # "int8" (integer-only microcontrollers) or "float32": what flash and RAM are figured for

# training
is_train = True  # full training (use_full_training = True); False = evaluate untrained (dry run)
is_train_proxy = True  # proxy training (use_full_training = False); False = evaluate untrained (dry run)
use_full_training = False  # True: train on every fold; False: proxy, on the first num_selected_folds folds
num_selected_folds = 2  # folds trained per child in proxy training
epochs = 15  # most epochs per fold
batch_size = 64  # samples per step
patience = 5  # epochs without a better validation loss before early stopping (the learning rate halves after patience // 2)
learning_rate = 1e-3  # Adam's initial step size
halving_eta = None  # successive halving in each generation: every network trains min_epochs, the best 1/halving_eta continue their training up to halving_eta x as many epochs, and so on up to epochs (3 = a third go on; None = all train the full budget)
min_epochs = 3  # epochs of successive halving's first rung (used when halving_eta is set)
verbose = 0  # 0: progress lines only; 1: plus Keras' per-epoch bar and TensorFlow's own messages; 2: one line per epoch
final_training = True  # True: after the search, its best final_candidates architectures (and with save_pareto_models the front) are trained again on every training session; the best on a held-out tenth is saved
final_candidates = 5  # how many of the search's best distinct architectures the final training trains again to choose from (1: the search's best alone)
final_epochs = 30  # most epochs of the final training (early stopping on a stratified tenth of the training split held out)
reference_forest = True  # first fit a 200-tree random forest on the run's split: its test figures stand beside the network's (a warning when it is near-perfect)

# evaluation: how many networks train at once, and where
executor = "local"  # "local": worker processes on this machine; "ray": Ray tasks (this machine or a cluster, see ray_address)
n_workers = 2  # networks trained at once (local: worker processes; ray: tasks in flight)
threads_per_worker = 1  # TensorFlow threads per network; n_workers x threads_per_worker = the cores to use
ray_address = None  # executor = "ray": None starts Ray on this machine; "auto" or "host:port" joins a running cluster

# output
logs_dir = "logs"  # folder of the run folders, relative to this folder or absolute
run_name = "nas"  # the run folder is <logs_dir>/<timestamp>_<run_name>
partial_save_steps = 1  # save the parent and the best model every this many generations
seed = 0  # seeds the split, the folds, the search and training
resume_from = None  # a run folder to continue from its last finished generation, with its saved parameters

# user-defined constraints and objectives. A constraint is a function of `figures` (dict: n_params,
# max_tens, flops, flash_size, ram_size, latency_ms, energy_mj) that returns True when a network passes; it is
# checked with the thresholds, before training. An objective is (function of `figures` and `scores`
# (dict: val_accuracy, val_f1), "max" or "min"); name it in `objectives` to search for it.
custom_constraints = {
    # "flash_and_ram_within_40kB": lambda figures: figures["flash_size"] + figures["ram_size"] <= 40_000,
}
custom_objectives = {
    # "accuracy_per_flash_kB": (lambda figures, scores: scores["val_accuracy"] * 1000 / figures["flash_size"], "max"),
}
# Your own boards: name -> a profile with the keys of hwnas.devices.DEVICE_PROFILES' (start from one of
# them, or from hwnas.devices.fit_profile on models timed on your board: docs/device_profiles.md);
# name it in target_device.
custom_devices = {
    # "STM32F401RE_at_100MHz": dict(DEVICE_PROFILES["STM32F401RE"], clock_mhz=100),  # with: from hwnas.devices import DEVICE_PROFILES
}
# -----------------------------------------------------------------------------
parameters = {name: value for name, value in list(globals().items())
              if not name.startswith("_") and isinstance(value, (bool, int, float, str, list, type(None)))}

from hwnas.common.files import display_path, path_as_parameter  # noqa: E402  (the parameters stay first)
from hwnas.common.overrides import ParameterError, check_path, check_run_name, parse_overrides  # noqa: E402
from hwnas.common.quiet import quiet_native_output, quiet_tensorflow_logs  # noqa: E402
from hwnas.run import run_folder  # noqa: E402
from hwnas.search.settings import BEFORE_ADDED, RESUMABLE  # noqa: E402

project_dir = os.path.dirname(os.path.abspath(__file__))
try:
    overrides = parse_overrides(sys.argv[1:], parameters)
    for name, optional in (("images_path", False), ("labels_path", False), ("test_images_path", True),
                           ("test_labels_path", True), ("logs_dir", False), ("resume_from", True)):
        check_path(name, overrides.get(name, parameters[name]), optional)
    resume_dir = overrides.get("resume_from", parameters["resume_from"])
    if resume_dir is None:
        parameters.update(overrides)
    else:  # the run's own parameters, then the few this command may change; one writer per run folder
        resume_dir = os.path.join(project_dir, str(resume_dir))
        parameters = run_folder.resume_parameters(resume_dir, parameters, overrides,
                                                      ("resume_from", *RESUMABLE),
                                                      BEFORE_ADDED)
        run_folder.hold_run_folder(resume_dir)
    check_run_name(parameters["run_name"])
except (ParameterError, run_folder.RunFolderBusy) as error:
    sys.exit(f"B01_NAS.py: {error}")
# TensorFlow announces its CPU features and the GPU it did not find from C++ at import.
with quiet_native_output(enabled=parameters["verbose"] == 0):
    import library_load_and_split_data as data_lib
    from hwnas.run.records import RecordsError
    from hwnas.run.report import empty_labels_text
    from hwnas.strategy.objectives import UserFunctionError
    from library_nas import NAS, ConstraintError, SearchStopped, check_search_parameters, search_parameter_names
if parameters["verbose"] == 0:
    quiet_tensorflow_logs()
# The search takes its own parameters; a helper variable of yours above the rule line stays yours.
search_parameters = {name: value for name, value in parameters.items() if name in search_parameter_names()}
try:
    check_search_parameters(dict(search_parameters, custom_constraints=custom_constraints,
                                 custom_objectives=custom_objectives, custom_devices=custom_devices),
                            n_folds=parameters["num_folds"])
except ValueError as error:
    sys.exit(f"B01_NAS.py: {error}")

# load and split: a stratified test split, then stratified folds of the rest
try:
    test_pair = {name: os.path.join(project_dir, parameters[name]) if parameters[name] is not None else None
                 for name in ("test_images_path", "test_labels_path")}
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(  # the sessions' bytes, scaled batch by batch
        parameters["num_classes"], parameters["test_size"], encode_labels=False,
        images_path=os.path.join(project_dir, parameters["images_path"]),
        labels_path=os.path.join(project_dir, parameters["labels_path"]), seed=parameters["seed"], keep_bytes=True,
        **test_pair)
except ValueError as error:  # DataFileError names the file; the others name the parameter
    sys.exit(f"B01_NAS.py: {error}")
try:
    folds = data_lib.fold_index(X_train, y_train, parameters["num_folds"], seed=parameters["seed"])
except ValueError as error:
    sys.exit(f"B01_NAS.py: {parameters['labels_path']}, num_folds={parameters['num_folds']}: {error}")
n_classes = parameters["num_classes"] or int(max(y_train.max(), y_test.max())) + 1
data = data_lib.SessionData(X_train, data_lib.one_hot(y_train, n_classes),
                            X_test, data_lib.one_hot(y_test, n_classes))
try:
    run_dir = resume_dir or run_folder.make_run_dir(os.path.join(project_dir, parameters["logs_dir"]),
                                                        parameters["run_name"])
except ParameterError as error:
    sys.exit(f"B01_NAS.py: {error}")
resume_command = f"python B01_NAS.py resume_from={path_as_parameter(run_dir, project_dir)}"

# search
try:
    nas = NAS(run_dir=run_dir, preloaded_data=data, custom_constraints=custom_constraints,
              custom_objectives=custom_objectives, custom_devices=custom_devices,
              class_names=data_lib.class_names_beside(os.path.join(project_dir, parameters["images_path"]), n_classes),
              **search_parameters)
except ValueError as error:  # what the data rule out: an input longer than the sessions, an embedding of non-bytes
    if resume_dir is None:
        run_folder.remove_run_folder(run_dir)
    sys.exit(f"B01_NAS.py: {error}")
try:
    nas.claim_run_folder(folds)  # this process writes it alone; a resume gets the data and split it had
    run_folder.write_parameters(run_dir, parameters)
    print(f"Run folder: {display_path(run_dir)}")
    test_source = "its own test pair" if parameters["test_images_path"] else f"test_size={parameters['test_size']}"
    print(f"Data: {len(X_train)} training / {len(X_test)} test sessions ({test_source}) of length {data.input_shape[0]}, "
          f"{n_classes} classes, {len(folds)} folds.{empty_labels_text(data)}")
    for notice in nas.notices:
        print(f"Note: {notice}.")
    last_parent, best = nas.run_NAS(folds)
except (ConstraintError, SearchStopped, UserFunctionError, RecordsError, run_folder.RunFolderBusy) as error:
    # unmet thresholds, failures, a broken custom function, a run folder whose records do not fit
    if resume_dir is None and not os.path.exists(nas.records_path):  # nothing was evaluated: no folder
        run_folder.remove_run_folder(run_dir)
    sys.exit(f"B01_NAS.py: {error}")
except KeyboardInterrupt:  # Ctrl-C or SIGTERM
    print(f"\nInterrupted. Everything up to the last finished generation is saved in "
          f"{display_path(run_dir)}.\nTo continue: {resume_command}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # everything is written and closed; TensorFlow's teardown would make Ctrl-C wait seconds

# report (best: the final model, trained again on every training session, when final_training is on)
figures = best.figures()
print(f"\nBest network: {best.child_id}, {best.architecture_text()}")
print(f"  params {figures.n_params}, FLOPs {figures.flops}, flash {figures.flash_size} B, RAM {figures.ram_size} B (estimated)")
if best.deployed:
    print(f"  {best.deploy_precision} TFLite measured: flash {best.deployed['flash_bytes']} B, "
          f"TFLM arena {best.deployed['arena_bytes']} B, test accuracy {best.deployed['test_accuracy']:.4f}")
final_text = "the final model's " if nas.search.final_models else ""
print(f"  validation accuracy {nas.best_searched.val_score:.4f} (search), {final_text}test accuracy "
      f"{best.test_metrics['accuracy']:.4f}")
print(f"  NAS log: {display_path(nas.log_path)}")
print(f"  Pareto front: {display_path(nas.pareto_path)}")
if best.trained:
    print(f"  model:   {display_path(os.path.join(nas.models_dir, 'best_model.keras'))}")
