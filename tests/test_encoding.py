"""What the network sees, searched: input encodings and lengths drawn, mutated and crossed
within their choices and the thresholds (as Keras, keras-flops and TFLM measure them), the
checks on the parameters, and the deployed embedding network taking a session's raw bytes."""
import csv
import glob
import json
import os
import re

import keras
import numpy as np
import pytest

from hwnas.common.overrides import ParameterError

from hwnas.run.run_folder import resume_parameters
from hwnas.network import deploy
from hwnas.data import idx as data_lib
from conftest import TINY_RUN, real_run
from hwnas.data.metrics import compute_descriptors
from hwnas.network.input_stage import InputStage
from library_nas import NAS, check_search_parameters
from hwnas.network.net import architecture_key, net_from_architecture
from hwnas.strategy.search_space import SMART_START_BLOCKS, SMART_START_HEAD
from test_nas import deployed_figures, keras_figures

TIGHT = dict(params_thr=20_000, flops_thr=2_000_000, flash_thr=32_000, ram_thr=16_000, max_tens_thr=16_000)
INPUTS = dict(input_encoding_choices=["scaled", "embedding"], embedding_dim_choices=[4, 8, 16],
              input_length_choices=[784, 400, 200])


def make_nas(tmp_path, data, **overrides):
    settings = dict(TIGHT, **INPUTS, max_depth=5, n_child=2, n_generations=1, epochs=1, seed=0)
    settings.update(overrides)
    return NAS(run_dir=str(tmp_path / "run"), preloaded_data=data, **settings)


def input_of(network):
    return network.input_stage.encoding, network.input_stage.embedding_dim, network.input_stage.length


def test_300_mutants_over_encodings_and_lengths_stay_in_the_choices_and_meet_every_threshold(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, n_mutations=2)
    parent, inputs_seen = nas.initial_parent(), set()
    for i in range(300):
        child = nas.mutate_network_and_control(parent, data)
        encoding, dim, length = input_of(child)
        assert encoding in INPUTS["input_encoding_choices"] and length in INPUTS["input_length_choices"]
        assert dim in (INPUTS["embedding_dim_choices"] if encoding == "embedding" else [None])
        inputs_seen.add((encoding, dim, length))
        block_length, channels = child.input_stage.output_shape  # the blocks read what the input stage gives
        assert channels == (dim or 1)
        for block in child.block_list:
            assert (block.input_size, block.input_channels) == (block_length, channels)
            block_length, channels = block.output_size, block.filters
        if i % 30 == 0:  # measured by the references, not by the filter that chose it
            n_params, flops, max_tens = keras_figures(child)
            assert n_params <= TIGHT["params_thr"] and flops <= TIGHT["flops_thr"]
            assert max_tens <= TIGHT["max_tens_thr"]
            flash_bytes, arena_bytes = deployed_figures(child)
            assert flash_bytes <= 1.025 * TIGHT["flash_thr"] and arena_bytes <= 1.01 * TIGHT["ram_thr"]
            keras.backend.clear_session()
        parent = child
    assert {encoding for encoding, _, _ in inputs_seen} == {"scaled", "embedding"}
    assert {length for _, _, length in inputs_seen} == set(INPUTS["input_length_choices"])


def test_change_input_redraws_one_input_setting_and_keeps_the_blocks_and_head(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, **TIGHT | {"params_thr": None, "flops_thr": None, "flash_thr": None,
                                              "ram_thr": None, "max_tens_thr": None})
    parent = nas.space.new_net([nas.space.random_block(None, 0, 2), nas.space.random_block(None, 1, 2)], "gap",
                               input_stage=InputStage("embedding", 400, embedding_dim=8))
    changed = set()
    for _ in range(300):
        child = nas.space.mutate(parent)
        if child.mutation != "change_input":
            assert input_of(child) == input_of(parent)
            continue
        assert [b.settings() for b in child.block_list] == [b.settings() for b in parent.block_list]
        assert child.head == parent.head
        differing = {name for name, old, new in zip(("encoding", "embedding_dim", "length"),
                                                   input_of(parent), input_of(child)) if old != new}
        assert differing in ({"embedding_dim"}, {"length"}, {"encoding", "embedding_dim"})
        changed.add(frozenset(differing))
    assert len(changed) == 3  # the size, the length and the encoding each changed at least once


def test_a_crossover_child_reads_the_input_of_the_parent_that_gives_its_first_block(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, search_strategy="ga", population_size=4, n_elites=2, n_child=4)
    space = nas.space
    first = space.new_net([space.random_block(None, i, 3) for i in range(3)], "gap", input_stage=InputStage("embedding", 200, embedding_dim=4))
    second = space.new_net([space.random_block(None, i, 3) for i in range(3)], "flatten", input_stage=InputStage("scaled", 784))
    first.child_id, second.child_id = "g000_c0001", "g000_c0002"
    origins = set()
    for _ in range(200):
        child = space.crossover(first, second)
        gives_first_block = first if child.block_list[0].settings() == first.block_list[0].settings() else second
        assert input_of(child) == input_of(gives_first_block)
        origins.add(gives_first_block.child_id)
    assert origins == {"g000_c0001", "g000_c0002"}


def test_random_networks_draw_every_encoding_size_and_length(tmp_path, small_data):
    data, _ = small_data
    nas = make_nas(tmp_path, data, params_thr=None, flops_thr=None, flash_thr=None, ram_thr=None, max_tens_thr=None)
    drawn = {input_of(nas.space.random_network(3, (), "a test network")) for _ in range(300)}
    expected = {("scaled", None, length) for length in INPUTS["input_length_choices"]} | {
        ("embedding", dim, length) for dim in INPUTS["embedding_dim_choices"] for length in INPUTS["input_length_choices"]}
    assert drawn == expected


def test_the_input_is_part_of_the_architecture_its_key_and_its_text(small_data):
    data, _ = small_data
    blocks = [dict(settings, dropout_rate=0.0) for settings in SMART_START_BLOCKS]
    old_record = {"head": SMART_START_HEAD, "blocks": blocks}  # recorded before the input was searched
    scaled = net_from_architecture(old_record, None, data)
    assert scaled.architecture()["input"] == {"encoding": "scaled", "length": 784, "embedding_dim": None}
    assert architecture_key(old_record, data.input_shape) == scaled.architecture_key()
    embedded = net_from_architecture(dict(old_record, input={"encoding": "embedding", "length": 256,
                                                             "embedding_dim": 8}), None, data)
    assert embedded.architecture_key() != scaled.architecture_key()
    assert scaled.architecture_text().startswith("in:scaled[784] | C16k5s2")
    assert embedded.architecture_text().startswith("in:emb8[256] | C16k5s2")
    assert embedded.block_list[0].input_channels == 8 and embedded.block_list[0].input_size == 256


def test_input_parameters_that_cannot_work_are_named(tmp_path, small_data):
    data, _ = small_data
    for parameters, message in ((dict(input_encoding_choices=["bits"]), "input_encoding_choices"),
                                (dict(input_encoding_choices=[]), "input_encoding_choices"),
                                (dict(input_encoding_choices=["scaled", "scaled"]), "input_encoding_choices"),
                                (dict(embedding_dim_choices=[0]), "embedding_dim_choices"),
                                (dict(input_length_choices=[256, "all"]), "input_length_choices"),
                                (dict(input_length_choices=[]), "input_length_choices")):
        with pytest.raises(ValueError, match=message):
            check_search_parameters(parameters)
    with pytest.raises(ValueError, match=r"input_length_choices \[1000\]: longer than the data's sessions \(784"):
        make_nas(tmp_path, data, input_length_choices=[784, 1000])
    not_bytes = data_lib.SessionData(data.X_train * 0.5 + 0.001, data.Y_train, data.X_test, data.Y_test)
    with pytest.raises(ValueError, match="includes 'embedding'.*must be byte values / 255"):
        make_nas(tmp_path, not_bytes)
    make_nas(tmp_path, not_bytes, input_encoding_choices=["scaled"])  # scaled reads any numbers


def test_a_run_saved_before_the_input_was_searched_resumes_with_the_input_it_had(tmp_path):
    run_dir = tmp_path / "old_run"
    run_dir.mkdir()
    defaults = {"seed": 0, "input_encoding_choices": ["scaled", "embedding"], "input_length_choices": None,
                "embedding_dim_choices": [4, 8, 16], "resume_from": None}
    (run_dir / "parameters.json").write_text(json.dumps({"seed": 3, "resume_from": None}))
    from hwnas.search import settings
    rules = ("resume_from", *settings.RESUMABLE), settings.BEFORE_ADDED
    resumed = resume_parameters(str(run_dir), defaults, {}, *rules)
    assert resumed["input_encoding_choices"] == ["scaled"] and resumed["seed"] == 3
    with pytest.raises(ParameterError, match="cannot change input_encoding_choices"):
        resume_parameters(str(run_dir), defaults, {"input_encoding_choices": ["embedding"]}, *rules)


def test_an_embedding_network_deploys_taking_the_sessions_raw_bytes(small_data, demo_subset_files, tmp_path):
    data, folds = small_data
    architecture = {"input": {"encoding": "embedding", "length": 512, "embedding_dim": 8}, "head": SMART_START_HEAD,
                    "blocks": [dict(b, dropout_rate=0.1) for b in SMART_START_BLOCKS]}
    net = net_from_architecture(architecture, None, data, dict(epochs=8))
    net.proxy_train_routine(True, folds, 1)
    deployed = net.measure_deployed()
    assert abs(deployed["test_accuracy"] - net.test_metrics["accuracy"]) <= 0.05
    details = deploy._tflm_interpreter(net.deployed_model_bytes).get_input_details(0)
    assert details["dtype"] == np.int32 and list(details["shape"]) == [1, 512]
    # The session's bytes as they are in the IDX file, no scaling, give the deployed model's predictions.
    images_path, labels_path = demo_subset_files
    raw = data_lib.read_idx3(images_path).reshape(600, -1)[:40, :512].astype(np.int32)
    scaled = data_lib.preprocess_data(data_lib.read_idx3(images_path)[:40], None)[0]
    np.testing.assert_array_equal(deploy.tflm_predict(net.deployed_model_bytes, raw),
                                  deploy.tflm_predict(net.deployed_model_bytes, scaled))
    # The C header says what to feed.
    _, header_path = net.save_deployed(str(tmp_path / "model_int8"))
    header = open(header_path).read()
    assert "// Input: 512 values of type int32: the session's first 512 bytes as they are" in header
    assert "model_int8_input_length = 512;" in header
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", header)) == net.deployed_model_bytes
    # The saved Keras model takes the data's samples as they are, loads with plain Keras, and
    # gives the test metrics of the network; exported, it is the deployed model.
    keras_path = str(tmp_path / "model.keras")
    net.save_keras(keras_path)
    loaded = keras.models.load_model(keras_path)
    assert compute_descriptors(data.Y_test, loaded.predict(data.X_test, verbose=0)) == pytest.approx(net.test_metrics)
    exported = deploy.export_keras_file(keras_path, data.X_train[:200], str(tmp_path / "exported_int8"))
    assert abs(len(exported) - len(net.deployed_model_bytes)) <= 64  # the same model, other calibration samples
    assert "int32" in open(tmp_path / "exported_int8.h").read().splitlines()[1]


@pytest.fixture(scope="module")
def tiny_input_run(tmp_path_factory, demo_subset_files):
    return real_run(tmp_path_factory, demo_subset_files, "tiny_inputs",
                    (*TINY_RUN, 'input_encoding_choices=["embedding","scaled"]', "embedding_dim_choices=[4,8]",
                     "input_length_choices=[784,300]", "n_child=3"))


def test_a_run_with_the_input_searched_records_it_everywhere_a_user_reads(tiny_input_run):
    run_dir, stdout, _, _ = tiny_input_run
    with open(os.path.join(run_dir, "children.csv"), newline="") as records_file:
        rows = list(csv.DictReader(records_file))
    assert rows[0]["input_encoding"] == "embedding" and rows[0]["embedding_dim"] == "4"  # the smart start's twin
    assert rows[0]["input_length"] == "784"
    for row in rows:
        stage = json.loads(row["architecture"])["input"]
        assert (row["input_encoding"], row["embedding_dim"], row["input_length"]) == (
            stage["encoding"], "" if stage["embedding_dim"] is None else str(stage["embedding_dim"]),
            str(stage["length"]))
        assert row["architecture_text"].startswith("in:")
        if row["status"] == "ok":  # every trained network was measured as the device runs it
            assert int(row["ram_measured"]) > 0 and abs(int(row["flash_size"]) / int(row["flash_measured"]) - 1) <= 0.025
    log = open(os.path.join(run_dir, "nas_log.txt")).read()
    assert "Inputs searched: encodings embedding, scaled (tables of 4, 8 values per byte); the first 784, 300 bytes" in log
    layers = open(os.path.join(run_dir, "best_architecture.txt")).read()
    best = json.load(open(os.path.join(run_dir, "models", "best_model.json")))
    if best["architecture"]["input"]["encoding"] == "embedding":
        assert "byte_table" in layers and "Embedding" in layers and "looked up in a learned 256 x" in layers
    from hwnas.run import report
    model, _ = report.load_best_model(run_dir)
    assert model.inputs[0].shape[1] == best["architecture"]["input"]["length"]
    header = glob.glob(os.path.join(run_dir, "models", "best_model_int8.h"))[0]
    assert "// Input: " in open(header).read()
