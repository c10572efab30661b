"""The specification's data module, kept where scripts written for the original toolkit import it:
IDX session files read, normalised, split into a stratified test set and stratified K folds.

The code lives in hwnas/data/ (idx.py: files, split, folds, SessionData; samples.py: a search's
samples); this module hands on the names a script uses.
"""
from hwnas.data.idx import (DEFAULT_IMAGES_PATH, DEFAULT_LABELS_PATH, DataFileError, SessionData,  # noqa: F401
                            class_names_beside, fold_index, get_fold_split, idx_bytes, load_and_preprocess_data,
                            one_hot, preprocess_data, read_idx1, read_idx3)
