"""The names and parameters of the original specification, kept so existing scripts run unchanged."""
import inspect

import pytest

import library_block
import library_compute_stats
import library_load_and_split_data
import library_nas
import library_net

SPECIFICATION = [
    (library_net.Net, "__init__", ["self", "block_list", "nas_saver_name", "preloaded_data"]),
    (library_net.Net, "fetch_data", ["self", "num_classes", "test_size", "encode_labels"]),
    (library_net.Net, "short_description", ["self"]),
    (library_net.Net, "dump", ["self"]),
    (library_net.Net, "ins_keras_model", ["self", "load_weigths"]),
    (library_net.Net, "train_routine", ["self", "is_train", "folds"]),
    (library_net.Net, "proxy_train_routine", ["self", "is_train_proxy", "folds", "num_selected_folds"]),
    (library_net.Net, "hw_measures", ["self"]),
    (library_net.Net, "log_message", ["self", "message"]),
    (library_nas.NAS, "__init__", ["self", "is_train_proxy", "is_train", "max_depth_father", "max_depth", "check_hw",
                                   "params_thr", "flops_thr", "flash_thr", "ram_thr", "max_tens_thr",
                                   "n_generations", "n_child", "n_mutations", "partial_save_steps", "smart_start",
                                   "is_random_walk", "nas_saver_name", "partial_saver_name", "preloaded_data",
                                   "use_full_training"]),
    (library_nas.NAS, "run_NAS", ["self", "folds"]),
    (library_nas.NAS, "train_generation", ["self", "child_set", "folds"]),
    (library_nas.NAS, "best_child_selection", ["self", "child_set", "gen_per", "test_metrics_list"]),
    (library_nas.NAS, "one_nas_step", ["self", "parent", "folds"]),
    (library_nas.NAS, "new_generation", ["self", "parent", "preloaded_data"]),
    (library_nas.NAS, "mutate_network_and_control", ["self", "parent", "preloaded_data"]),
    (library_nas.NAS, "mutate_network", ["self", "parent", "preloaded_data"]),
    (library_nas.NAS, "generate_random_block", ["self", "input_size", "block_index", "current_architecture_depth"]),
    (library_nas.NAS, "remove_block", ["self", "parent_blocks"]),
    (library_nas.NAS, "change_block", ["self", "parent_blocks"]),
    (library_nas.NAS, "add_block", ["self", "parent_blocks"]),
    (library_nas.NAS, "recalculate_dropout_rates", ["self", "blocks"]),
    (library_nas.NAS, "correct_blocklist", ["self", "child_blocks"]),
    (library_nas.NAS, "save_partial", ["self", "parent", "best_network", "i_gen", "gen_best_score",
                                       "absolute_best_score"]),
    (library_nas.NAS, "log_message", ["self", "message", "mode"]),
    (library_block.Block, "calculate_output_size", ["self"]),
    (library_block.Block, "dump", ["self"]),
    (library_block.Block, "create_layer", ["self", "input_shape"]),
    (library_compute_stats, "compute_descriptors", ["y_true", "y_pred"]),
    (library_load_and_split_data, "read_idx3", ["filename"]),
    (library_load_and_split_data, "read_idx1", ["filename"]),
    (library_load_and_split_data, "load_and_preprocess_data", ["num_classes", "test_size", "encode_labels"]),
    (library_load_and_split_data, "preprocess_data", ["X", "y", "num_classes", "encode_labels"]),
    (library_load_and_split_data, "fold_index", ["X", "y", "num_splits"]),
    (library_load_and_split_data, "get_fold_split", ["X", "Y", "folds", "i_fold"]),
]


@pytest.mark.parametrize("owner, name, leading_parameters", SPECIFICATION,
                         ids=[f"{owner.__name__}.{name}" for owner, name, _ in SPECIFICATION])
def test_specified_callable_keeps_its_parameters(owner, name, leading_parameters):
    parameters = list(inspect.signature(getattr(owner, name)).parameters)
    assert parameters[:len(leading_parameters)] == leading_parameters


def test_specified_defaults_are_kept():
    defaults = {name: p.default for name, p in inspect.signature(library_net.Net.proxy_train_routine).parameters.items()}
    assert defaults["num_selected_folds"] == 2
    assert inspect.signature(library_net.Net.ins_keras_model).parameters["load_weigths"].default is False
    assert inspect.signature(library_nas.NAS.log_message).parameters["mode"].default == "a"
    load = inspect.signature(library_load_and_split_data.load_and_preprocess_data).parameters
    assert load["test_size"].default == 0.1 and load["encode_labels"].default is False
    assert inspect.signature(library_load_and_split_data.fold_index).parameters["num_splits"].default == 2


def test_nas_takes_every_search_parameter_of_the_main_script(small_data, tmp_path):
    """Its keyword arguments are library_settings' (test_structure holds B01_NAS.py's block to them)."""
    from hwnas.search import settings as library_settings
    from test_structure import main_script_parameters
    searched = {name: value for name, value in main_script_parameters().items() if name in library_settings.SETTINGS}
    assert len(searched) > 50
    nas = library_nas.NAS(run_dir=str(tmp_path / "run"), preloaded_data=small_data[0], **searched)
    assert nas.settings == dict(library_settings.DEFAULTS, **searched)
    assert set(library_settings.ORIGINAL) <= set(searched)  # B01_NAS.py gives every setting: none is left to the original's


def test_load_and_preprocess_data_returns_the_originals_order(demo_subset_files):
    images_path, labels_path = demo_subset_files
    X_train_val, y_train_val, X_test, y_test = library_load_and_split_data.load_and_preprocess_data(
        None, 0.2, encode_labels=False, images_path=images_path, labels_path=labels_path)
    assert X_train_val.ndim == 3 and X_train_val.dtype.kind == "f"  # features (N, length, 1)
    assert y_train_val.ndim == 1 and y_train_val.dtype.kind in "iu"  # integer labels, for fold_index
    assert len(X_train_val) == len(y_train_val) == 480 and len(X_test) == len(y_test) == 120
    _, y_one_hot, _, _ = library_load_and_split_data.load_and_preprocess_data(
        None, 0.2, encode_labels=True, images_path=images_path, labels_path=labels_path)
    assert y_one_hot.shape == (480, 6) and (y_one_hot.argmax(axis=1) == y_train_val).all()
