"""IDX session files: reading, normalisation, the stratified test split and K folds, and the
data a search works on (SessionData).

The IDX format is MNIST's: a big-endian header (uint32 magic, uint32 count and,
for images, uint32 rows and cols) followed by uint8 payload, plain or
gzip-compressed (as MNIST is distributed). Each sample of an `.idx3` file becomes
one 1-D sequence of rows x cols bytes for the Conv1D search.
"""
import gzip
import hashlib
import json
import math
import os
import struct
import zlib
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from hwnas import PROJECT_DIR
from hwnas.common.numbers import is_integer, is_number

DEFAULT_IMAGES_PATH = os.path.join(PROJECT_DIR, "data", "demo_sessions.idx3")


DEFAULT_LABELS_PATH = os.path.join(PROJECT_DIR, "data", "demo_labels.idx1")


IDX3_MAGIC = 2051  # uint8 images, 3 dimensions (count, rows, cols)


IDX1_MAGIC = 2049  # uint8 labels, 1 dimension (count)


class DataFileError(ValueError):
    """A data file is missing or malformed; the message names the file."""


GZIP_MAGIC = b"\x1f\x8b"  # MNIST's files are distributed gzip-compressed (.gz)


GZIP_MAX_RATIO = 1100  # deflate cannot expand data more than about 1032:1


READ_CHUNK_BYTES = 64 << 20


def _read_idx(filename, expected_magic, n_dims):
    """Reads an uint8 IDX file (plain or gzip-compressed) with `n_dims` dimensions.

    The header is read and checked first, so a file that is not IDX is never
    read whole; sizes are computed in Python integers, so no header can
    overflow them.
    """
    if os.path.isdir(filename):
        raise DataFileError(f"{filename}: is a directory, not an IDX file")
    if not os.path.isfile(filename):
        raise DataFileError(f"{filename}: no such file")
    header_bytes = 4 * (1 + n_dims)
    file_bytes = os.path.getsize(filename)
    with open(filename, "rb") as raw_file:
        compressed = raw_file.read(2) == GZIP_MAGIC
    if file_bytes == 0:
        raise DataFileError(f"{filename}: the file is empty")
    opener = gzip.open if compressed else open
    try:
        with opener(filename, "rb") as f:
            header = f.read(header_bytes)
            if len(header) < header_bytes:
                raise DataFileError(f"{filename}: {len(header)} bytes is shorter than the "
                                    f"{header_bytes}-byte IDX header")
            magic, *dims = struct.unpack(f">{1 + n_dims}I", header)
            if magic != expected_magic:
                raise DataFileError(
                    f"{filename}: magic number {magic}, expected {expected_magic} "
                    f"(uint8 IDX with {n_dims} dimension{'s' if n_dims > 1 else ''})")
            if dims[0] == 0:
                raise DataFileError(f"{filename}: the header declares 0 samples")
            if 0 in dims[1:]:
                raise DataFileError(f"{filename}: the header declares samples of "
                                    f"{' x '.join(map(str, dims[1:]))} = 0 bytes")
            payload_bytes = math.prod(dims)
            shape_text = f"header says {' x '.join(map(str, dims))} = {payload_bytes} payload bytes"
            if not compressed and file_bytes - header_bytes != payload_bytes:
                raise DataFileError(f"{filename}: {shape_text}, the file holds {file_bytes - header_bytes} "
                                    f"(truncated or trailing bytes)")
            if compressed and payload_bytes > GZIP_MAX_RATIO * file_bytes:
                raise DataFileError(f"{filename}: {shape_text}, more than a {file_bytes}-byte gzip file can hold")
            payload = bytearray()
            while len(payload) <= payload_bytes:  # one byte more than declared shows trailing bytes
                chunk = f.read(min(READ_CHUNK_BYTES, payload_bytes + 1 - len(payload)))
                if not chunk:
                    break
                payload += chunk
    except (OSError, EOFError, zlib.error) as error:  # a broken gzip stream, a read error
        raise DataFileError(f"{filename}: cannot be read ({error})") from None
    if len(payload) != payload_bytes:
        raise DataFileError(f"{filename}: {shape_text}, the {'decompressed ' * compressed}file holds "
                            f"{'more' if len(payload) > payload_bytes else len(payload)} "
                            f"(truncated or trailing bytes)")
    return np.frombuffer(bytes(payload), dtype=np.uint8).reshape(dims)


def read_idx3(filename):
    """Reads an IDX3 image file.

    Returns a uint8 array (count, rows, cols). Raises DataFileError naming the
    file when it is missing, empty, has another magic number or a size that
    does not match its header.
    """
    return _read_idx(filename, IDX3_MAGIC, 3)


def read_idx1(filename):
    """Reads an IDX1 label file. Returns a uint8 array (count,); errors as read_idx3."""
    return _read_idx(filename, IDX1_MAGIC, 1)


def idx_bytes(array):
    """The IDX file of a uint8 array: (count, rows, cols) images as IDX3, (count,) labels as IDX1."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: IDX3_MAGIC, 1: IDX1_MAGIC}[array.ndim]
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def preprocess_data(X, y, num_classes=None, encode_labels=False):
    """Scales bytes to float32 in [0, 1] and shapes samples for Conv1D.

    X: uint8 (N, rows, cols) or (N, L). y: integer labels (N,).
    num_classes: needed for one-hot; None takes max(y) + 1.
    Returns (X float32 (N, L, 1), y) with y one-hot float32 (N, num_classes)
    when encode_labels, else the integer labels unchanged.
    """
    X = np.asarray(X)
    X = (X.reshape(len(X), -1, 1).astype(np.float32) / 255.0)  # (batch, length, channels)
    if encode_labels:
        y = one_hot(y, num_classes)
    return X, y


def one_hot(y, num_classes=None):
    """Integer labels (N,) -> float32 one-hot (N, num_classes)."""
    y = np.asarray(y, dtype=np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1
    return np.eye(num_classes, dtype=np.float32)[y]


def _check_dataset(images, labels, images_path, labels_path, num_classes, test_size):
    if len(images) != len(labels):
        raise DataFileError(
            f"{images_path} holds {len(images)} samples but {labels_path} holds {len(labels)} labels")
    _check_num_classes(num_classes)
    if num_classes is not None and labels.max() >= num_classes:
        bad = np.unique(labels[labels >= num_classes]).tolist()
        raise DataFileError(
            f"{labels_path}: labels {bad} are >= num_classes={num_classes}")
    if not is_number(test_size) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise DataFileError(f"{labels_path}: every label is {classes[0]}; with one class there is nothing "
                            f"to classify (validation and test accuracy would be meaningless)")
    n_test = int(np.ceil(test_size * len(labels)))
    if n_test < len(classes) or len(labels) - n_test < len(classes):
        raise DataFileError(
            f"{labels_path}: test_size={test_size} of {len(labels)} samples cannot hold "
            f"each of the {len(classes)} classes on both sides of the split")
    rare = classes[counts < 2]
    if len(rare):
        raise DataFileError(
            f"{labels_path}: classes {rare.tolist()} have fewer than 2 samples; a stratified "
            f"test split needs at least 2 per class")


def load_and_preprocess_data(num_classes=None, test_size=0.1, encode_labels=False,
                             images_path=DEFAULT_IMAGES_PATH, labels_path=DEFAULT_LABELS_PATH,
                             seed=0, test_images_path=None, test_labels_path=None, keep_bytes=False):
    """Loads an IDX3/IDX1 pair and splits off a stratified test set, or takes a data set's
    own test pair.

    num_classes: None derives it from the labels; otherwise every label must be below it.
    test_size: fraction of samples held out for testing, in (0, 1); not used when
        test_images_path and test_labels_path give the test pair (as published data
        sets do: MNIST's and USTC-TK2016's t10k files), which is the test set as it is.
    seed: seed of the split, so the test set is the same on every run.
    keep_bytes: True keeps the samples as the file's bytes, uint8 (N, L, 1), a quarter of
        float32's memory (SessionData scales them batch by batch); the split is the same.
    Returns X_train, y_train, X_test, y_test, the original toolkit's order:
    features float32 (N, L, 1) in [0, 1] (uint8 with keep_bytes); labels integer, or one-hot
    when encode_labels.
    Raises DataFileError naming the file for missing or malformed data, and naming both
    pairs when their session lengths or classes do not fit together.
    """
    images = read_idx3(images_path)
    labels = read_idx1(labels_path)
    if (test_images_path is None) != (test_labels_path is None):
        given, missing = (("test_images_path", "test_labels_path") if test_labels_path is None
                          else ("test_labels_path", "test_images_path"))
        raise ValueError(f"{given} is set but {missing} is not: a test pair needs both files")
    if test_images_path is None:
        _check_dataset(images, labels, images_path, labels_path, num_classes, test_size)
        X_train, X_test, y_train, y_test = train_test_split(
            images, labels, test_size=test_size, stratify=labels, random_state=seed)
    else:
        X_test, y_test = read_idx3(test_images_path), read_idx1(test_labels_path)
        _check_pairs(images, labels, X_test, y_test, (images_path, labels_path, test_images_path, test_labels_path),
                     num_classes)
        X_train, y_train = images, labels
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    if keep_bytes:
        return (X_train.reshape(len(X_train), -1, 1), one_hot(y_train, num_classes) if encode_labels else y_train,
                X_test.reshape(len(X_test), -1, 1), one_hot(y_test, num_classes) if encode_labels else y_test)
    X_train, y_train = preprocess_data(X_train, y_train, num_classes, encode_labels)
    X_test, y_test = preprocess_data(X_test, y_test, num_classes, encode_labels)
    return X_train, y_train, X_test, y_test


def _check_num_classes(num_classes):
    if num_classes is not None and (not is_integer(num_classes)
                                    or num_classes < 2):
        raise ValueError(f"num_classes must be None (from the labels) or an integer >= 2, got {num_classes!r}")


def _check_pairs(images, labels, test_images, test_labels, paths, num_classes):
    """The checks of a training pair and its own test pair: each pair's counts, the labels
    against num_classes, the same session length, no test class the training pair lacks."""
    images_path, labels_path, test_images_path, test_labels_path = paths
    _check_num_classes(num_classes)
    for pair_images, pair_labels, pair_images_path, pair_labels_path in (
            (images, labels, images_path, labels_path), (test_images, test_labels, test_images_path, test_labels_path)):
        if len(pair_images) != len(pair_labels):
            raise DataFileError(f"{pair_images_path} holds {len(pair_images)} samples but {pair_labels_path} holds "
                                f"{len(pair_labels)} labels")
        if num_classes is not None and pair_labels.max() >= num_classes:
            bad = np.unique(pair_labels[pair_labels >= num_classes]).tolist()
            raise DataFileError(f"{pair_labels_path}: labels {bad} are >= num_classes={num_classes}")
    if images.shape[1:] != test_images.shape[1:]:
        raise DataFileError(f"{images_path} holds sessions of {' x '.join(map(str, images.shape[1:]))} bytes, "
                            f"{test_images_path} of {' x '.join(map(str, test_images.shape[1:]))}: the test pair "
                            f"must be of the training pair's length")
    missing = sorted(set(np.unique(test_labels).tolist()) - set(np.unique(labels).tolist()))
    if missing:
        raise DataFileError(f"{test_labels_path}: classes {missing} are not in {labels_path}: a network can only "
                            f"be tested on classes it was trained on")
    if len(np.unique(labels)) < 2:
        raise DataFileError(f"{labels_path}: every label is {labels[0]}; with one class there is nothing to classify")


# How B00_pcap_to_idx.py names its images files, and the class names' file beside them.
IMAGES_SUFFIXES = ("_sessions.idx3", "-train-images-idx3-ubyte.gz", "-train-images-idx3-ubyte")


def class_names_beside(images_path, num_classes):
    """The class names of a data set, label by label, from the labels JSON ({name: label}) that
    B00_pcap_to_idx.py writes beside its images (<name>_labels.json); the labels' numbers as
    text when there is none or it does not name every label."""
    names = [str(label) for label in range(num_classes)]
    for suffix in IMAGES_SUFFIXES:
        if images_path.endswith(suffix):
            path = images_path[:-len(suffix)] + "_labels.json"
            try:
                with open(path) as classes_file:
                    numbers = json.load(classes_file)
            except (OSError, ValueError):
                return names
            if isinstance(numbers, dict) and sorted(numbers.values()) == list(range(num_classes)):
                return [name for name, _ in sorted(numbers.items(), key=lambda item: item[1])]
    return names


def fold_index(X, y, num_splits=2, seed=0):
    """Stratified K folds of (X, y) with integer labels y.

    Returns a list of num_splits (train_indices, validation_indices) pairs.
    Raises ValueError when a class has fewer samples than num_splits.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError("fold_index takes integer labels; one-hot encode after making the folds")
    if num_splits < 2:
        raise ValueError(f"num_splits must be at least 2, got {num_splits}")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < num_splits:
        raise ValueError(
            f"class {classes[counts.argmin()]} has {counts.min()} training samples, "
            f"fewer than the {num_splits} folds need")
    splitter = StratifiedKFold(n_splits=num_splits, shuffle=True, random_state=seed)
    return [(train_idx, val_idx) for train_idx, val_idx in splitter.split(np.zeros(len(y)), y)]


def get_fold_split(X, Y, folds, i_fold):
    """Returns X_train, X_val, Y_train, Y_val of fold i_fold of `folds`."""
    train_idx, val_idx = folds[i_fold]
    return X[train_idx], X[val_idx], Y[train_idx], Y[val_idx]


def data_fingerprint(data, folds):
    """What a search is run on, to check a resume against: the shapes, the number of
    classes and folds, and one SHA-256 of the split data and the fold indices
    (another file, seed, test_size or num_folds changes it). Samples kept as bytes are
    hashed as the float32 values / 255 they stand for, chunk by chunk, so a run searched
    on float32 samples resumes on the same data kept as bytes."""
    digest = hashlib.sha256()
    for array in (*data, *(indices for fold in folds for indices in fold)):
        array = np.asarray(array)
        as_float = array.dtype == np.uint8 and array.ndim == 3
        digest.update(f"{np.dtype(np.float32) if as_float else array.dtype}{array.shape}".encode())
        for start in range(0, max(len(array), 1), FINGERPRINT_CHUNK):
            chunk = np.ascontiguousarray(array[start:start + FINGERPRINT_CHUNK])
            digest.update(scaled(chunk) if as_float else chunk)
    return {"training_samples": list(data.X_train.shape), "test_samples": list(data.X_test.shape),
            "num_classes": data.num_classes, "num_folds": len(folds), "sha256": digest.hexdigest()}


FINGERPRINT_CHUNK = 8192  # samples hashed at once: the float32 view of a chunk, never of the whole set


def scaled(X):
    """Samples as a model takes them: bytes (uint8) as float32 values / 255, float samples as
    float32 (bytes / 255 already, or a user's own features)."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return X.astype(np.float32) / np.float32(255.0)
    return X.astype(np.float32, copy=False)


class SessionData(NamedTuple):
    """The data a search works on: training split (folds are made on it) and test split.

    X_*: (N, length, 1) samples, either the sessions' bytes as read (uint8: a quarter of the
    memory; scaled() turns them into a model's input batch by batch) or float32 samples
    (bytes / 255, as load_and_preprocess_data gives them, or a user's own features);
    Y_*: one-hot float32 (N, num_classes).
    """
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray

    @classmethod
    def from_preloaded(cls, preloaded_data):
        """A SessionData from what a script passes as preloaded_data.

        Takes a SessionData as it is, or the original toolkit's plain 4-tuple
        (X_train_val, y_train_val, X_test, y_test): features (N, L) or (N, L, 1),
        or (N, rows, cols) as read from IDX; labels one-hot (to_categorical) or
        integers (encoded here: as many classes as the one-hot part has, else max label + 1).
        Raises ValueError naming what does not fit.
        """
        if isinstance(preloaded_data, cls):
            return preloaded_data
        if not isinstance(preloaded_data, (tuple, list)) or len(preloaded_data) != 4:
            raise ValueError("preloaded_data must be a SessionData or a 4-tuple "
                             "(X_train_val, y_train_val, X_test, y_test)")
        X_train, Y_train, X_test, Y_test = (np.asarray(part) for part in preloaded_data)
        if len(X_train) != len(Y_train) or len(X_test) != len(Y_test):
            raise ValueError(f"preloaded_data: {len(X_train)} training samples with {len(Y_train)} labels, "
                             f"{len(X_test)} test samples with {len(Y_test)} labels")
        if X_train.shape[1:] != X_test.shape[1:]:
            raise ValueError(f"preloaded_data: training samples of shape {X_train.shape[1:]}, "
                             f"test samples of shape {X_test.shape[1:]}")
        if Y_train.ndim == 1 or Y_test.ndim == 1:
            one_hot_parts = [Y.shape[1] for Y in (Y_train, Y_test) if Y.ndim > 1]
            num_classes = one_hot_parts[0] if one_hot_parts else int(max(Y_train.max(), Y_test.max())) + 1
            Y_train = Y_train if Y_train.ndim > 1 else one_hot(Y_train, num_classes)
            Y_test = Y_test if Y_test.ndim > 1 else one_hot(Y_test, num_classes)
        if Y_train.shape[1] != Y_test.shape[1]:
            raise ValueError(f"preloaded_data: {Y_train.shape[1]} classes in the training labels, "
                             f"{Y_test.shape[1]} in the test labels")

        def as_sequences(X):  # (batch, length, channels), as the Conv1D blocks take it
            X = X.astype(np.float32)  # the original's samples as given (a uint8 array stays 0..255)
            return X.reshape(len(X), -1, 1) if X.ndim != 3 or X.shape[2] != 1 else X

        return cls(as_sequences(X_train), Y_train.astype(np.float32), as_sequences(X_test), Y_test.astype(np.float32))

    @property
    def input_shape(self):
        return tuple(self.X_train.shape[1:])  # (length, channels)

    @property
    def num_classes(self):
        return int(self.Y_train.shape[1])

    def empty_labels(self):
        """The labels below num_classes that no training or test sample has (num_classes counts
        them: the largest label + 1, or the one-hot width given)."""
        counts = self.Y_train.sum(axis=0) + self.Y_test.sum(axis=0)
        return [int(label) for label in np.flatnonzero(counts == 0)]

    @property
    def holds_bytes(self):
        """Whether the samples are the sessions' bytes (uint8), scaled batch by batch."""
        return self.X_train.dtype == np.uint8
