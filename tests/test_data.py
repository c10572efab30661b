"""IDX parsing, normalisation, the stratified split and folds, on real and hand-made files."""

import gzip
import struct

import numpy as np
import pytest

from hwnas.data import idx as data_lib
from conftest import write_idx1, write_idx3


def test_demo_files_parse_with_their_documented_shape():
    images = data_lib.read_idx3(data_lib.DEFAULT_IMAGES_PATH)
    labels = data_lib.read_idx1(data_lib.DEFAULT_LABELS_PATH)
    assert images.shape == (3204, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (3204,)
    assert np.bincount(labels).tolist() == [538, 500, 500, 600, 566, 500]


def test_round_trip_of_a_hand_made_idx_pair(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 5, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    write_idx3(tmp_path / "x.idx3", images)
    write_idx1(tmp_path / "y.idx1", labels)
    assert np.array_equal(data_lib.read_idx3(str(tmp_path / "x.idx3")), images)
    assert np.array_equal(data_lib.read_idx1(str(tmp_path / "y.idx1")), labels)


def test_input_length_and_classes_come_from_the_files(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(60, 5, 3), dtype=np.uint8)
    labels = np.arange(60) % 3
    write_idx3(tmp_path / "x.idx3", images)
    write_idx1(tmp_path / "y.idx1", labels)
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(
        None, 0.25, encode_labels=True, images_path=str(tmp_path / "x.idx3"),
        labels_path=str(tmp_path / "y.idx1"))
    assert X_train.shape == (45, 15, 1) and X_test.shape == (15, 15, 1)
    assert X_train.dtype == np.float32 and 0.0 <= X_train.min() and X_train.max() <= 1.0
    assert y_train.shape == (45, 3) and y_test.sum(axis=0).tolist() == [5, 5, 5]  # stratified


def test_scaling_maps_bytes_to_unit_interval():
    X, _ = data_lib.preprocess_data(np.array([[[0, 255], [51, 102]]], dtype=np.uint8), np.array([0]))
    assert X.shape == (1, 4, 1)
    assert np.allclose(X[0, :, 0], [0.0, 1.0, 0.2, 0.4])


def test_split_is_stratified_and_fixed_by_seed():
    first = data_lib.load_and_preprocess_data(None, 0.1, seed=3)
    again = data_lib.load_and_preprocess_data(None, 0.1, seed=3)
    assert np.array_equal(first[2], again[2])
    y_train, y_test = first[1], first[3]
    all_fraction = np.bincount(np.concatenate([y_train, y_test])) / (len(y_train) + len(y_test))
    assert np.allclose(np.bincount(y_test) / len(y_test), all_fraction, atol=0.01)


def test_folds_partition_the_training_split_and_are_stratified():
    X_train, y_train, _, _ = data_lib.load_and_preprocess_data(None, 0.1)
    folds = data_lib.fold_index(X_train, y_train, 5)
    validation = np.concatenate([val for _, val in folds])
    assert sorted(validation.tolist()) == list(range(len(y_train)))
    for train_idx, val_idx in folds:
        assert not set(train_idx) & set(val_idx)
        assert np.allclose(np.bincount(y_train[val_idx]) / len(val_idx),
                           np.bincount(y_train) / len(y_train), atol=0.01)
    X_tr, X_val, Y_tr, Y_val = data_lib.get_fold_split(X_train, y_train, folds, 2)
    assert len(X_tr) + len(X_val) == len(X_train) and np.array_equal(Y_val, y_train[folds[2][1]])


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x00\x00\x08", "shorter than"),
    (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x01" * 3 + b"\x00", "magic number 2049"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x02" * 2 + b"\x00" * 7, "truncated"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02" * 2 + b"\x00" * 5, "trailing"),
    # 64 x 536903681 x 536838145 is 2**64 + 64: it wraps to 64 in 64-bit integers
    (struct.pack(">IIII", 2051, 64, 536903681, 536838145) + b"\x00" * 64, "= 18446744073709551680 payload bytes"),
    (struct.pack(">IIII", 2051, 5, 0, 28), "samples of 0 x 28 = 0 bytes"),
    # mtime=0: a gzip header holds the time, and the two pytest-xdist workers must collect the same ids
    (gzip.compress(struct.pack(">IIII", 2051, 2, 2, 2) + b"\x00" * 7, mtime=0), "decompressed file holds 7"),
    (gzip.compress(struct.pack(">IIII", 2051, 2, 2, 2) + b"\x00" * 8, mtime=0)[:-12], "cannot be read"),
    (gzip.compress(struct.pack(">IIII", 2051, 1000, 1000, 1000), mtime=0), "more than a .*-byte gzip file can hold"),
])
def test_malformed_idx3_is_rejected_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.idx3"
    path.write_bytes(content)
    with pytest.raises(data_lib.DataFileError, match=message) as error:
        data_lib.read_idx3(str(path))
    assert str(path) in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(data_lib.DataFileError, match="no such file"):
        data_lib.read_idx1(str(tmp_path / "absent.idx1"))


def test_mismatched_counts_and_out_of_range_labels_are_rejected(tmp_path):
    write_idx3(tmp_path / "x.idx3", np.zeros((20, 2, 2)))
    write_idx1(tmp_path / "y.idx1", np.arange(19) % 2)
    with pytest.raises(data_lib.DataFileError, match="20 samples but .* 19 labels"):
        data_lib.load_and_preprocess_data(None, 0.2, images_path=str(tmp_path / "x.idx3"),
                                          labels_path=str(tmp_path / "y.idx1"))
    write_idx1(tmp_path / "y.idx1", np.arange(20) % 4)
    with pytest.raises(data_lib.DataFileError, match=r"labels \[3\] are >= num_classes=3"):
        data_lib.load_and_preprocess_data(3, 0.2, images_path=str(tmp_path / "x.idx3"),
                                          labels_path=str(tmp_path / "y.idx1"))


def test_gzip_compressed_idx_is_read_as_the_plain_file(tmp_path):
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, size=(30, 4, 7), dtype=np.uint8), np.arange(30) % 3
    write_idx3(tmp_path / "x.idx3", images)
    write_idx1(tmp_path / "y.idx1", labels)
    for name in ("x.idx3", "y.idx1"):  # as MNIST is distributed: train-images-idx3-ubyte.gz
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress((tmp_path / name).read_bytes()))
    assert np.array_equal(data_lib.read_idx3(str(tmp_path / "x.idx3.gz")), images)
    assert np.array_equal(data_lib.read_idx1(str(tmp_path / "y.idx1.gz")), labels)


def test_a_directory_a_huge_non_idx_file_and_one_class_are_named(tmp_path):
    with pytest.raises(data_lib.DataFileError, match="is a directory, not an IDX file"):
        data_lib.read_idx3(str(tmp_path))
    huge = tmp_path / "huge.idx3"  # 3 GB (sparse): refused from its header and size, never read whole
    with open(huge, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 10, 28, 28))
        f.truncate(3 << 30)
    with pytest.raises(data_lib.DataFileError, match="header says 10 x 28 x 28 = 7840 payload bytes, the file holds"):
        data_lib.read_idx3(str(huge))
    write_idx3(tmp_path / "x.idx3", np.zeros((20, 2, 2)))
    write_idx1(tmp_path / "y.idx1", np.full(20, 4))
    with pytest.raises(data_lib.DataFileError, match="every label is 4; with one class there is nothing to classify"):
        data_lib.load_and_preprocess_data(None, 0.2, images_path=str(tmp_path / "x.idx3"),
                                          labels_path=str(tmp_path / "y.idx1"))
    write_idx1(tmp_path / "y.idx1", np.arange(20) % 2)
    for num_classes in ("abc", 3.5, 1):
        with pytest.raises(ValueError, match=f"num_classes must be None .* or an integer >= 2, got {num_classes!r}"):
            data_lib.load_and_preprocess_data(num_classes, 0.2, images_path=str(tmp_path / "x.idx3"),
                                              labels_path=str(tmp_path / "y.idx1"))


def test_a_data_sets_own_test_pair_is_the_test_set_as_it_is(tmp_path):
    rng = np.random.default_rng(2)
    train_images, test_images = (rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8) for n in (30, 9))
    write_idx3(tmp_path / "train.idx3", train_images)
    write_idx1(tmp_path / "train.idx1", np.arange(30) % 3)
    with gzip.open(tmp_path / "t10k.idx3.gz", "wb") as gz_file:  # read directly, as the published files are
        gz_file.write(data_lib.idx_bytes(test_images))
    write_idx1(tmp_path / "t10k.idx1", np.arange(9) % 3)
    paths = dict(images_path=str(tmp_path / "train.idx3"), labels_path=str(tmp_path / "train.idx1"),
                 test_images_path=str(tmp_path / "t10k.idx3.gz"), test_labels_path=str(tmp_path / "t10k.idx1"))
    X_train, y_train, X_test, y_test = data_lib.load_and_preprocess_data(None, 0.5, **paths)
    assert X_train.shape == (30, 16, 1) and X_test.shape == (9, 16, 1)  # test_size is not used
    np.testing.assert_array_equal(X_test[..., 0] * 255, test_images.reshape(9, 16).astype(np.float32))
    assert y_test.tolist() == (np.arange(9) % 3).tolist()
    write_idx3(tmp_path / "short.idx3", test_images[:, :2])
    with pytest.raises(data_lib.DataFileError, match="train.idx3 holds sessions of 4 x 4 bytes, .*short.idx3 of 2 x 4"):
        data_lib.load_and_preprocess_data(None, 0.1, **dict(paths, test_images_path=str(tmp_path / "short.idx3")))
    write_idx1(tmp_path / "extra.idx1", np.arange(9) % 4)
    with pytest.raises(data_lib.DataFileError, match=r"extra.idx1: classes \[3\] are not in .*train.idx1"):
        data_lib.load_and_preprocess_data(None, 0.1, **dict(paths, test_labels_path=str(tmp_path / "extra.idx1")))
    with pytest.raises(ValueError, match="test_images_path is set but test_labels_path is not"):
        data_lib.load_and_preprocess_data(None, 0.1, **dict(paths, test_labels_path=None))
