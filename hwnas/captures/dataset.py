"""A dataset of sessions from many captures: their labels, exact duplicates and
ambiguous sessions dropped, a seeded per-class cap, a seeded order, the
statistics per class, and the files B01_NAS.py reads, written atomically.

Everything here is decided in the sorted order of the capture files and of the
sessions in each, so the dataset depends on the files and the seed only: not on
the file system's listing order, nor on how many workers read the files.
"""
import collections
import csv
import hashlib
import io
import json
import os
import statistics
import tempfile
from typing import NamedTuple

import numpy as np

from hwnas.captures import labels as labels_lib
from hwnas.data.idx import idx_bytes

IDX_SQUARE_LENGTH = 784  # an output format rule, not a fact of any data: this length is written as MNIST's 28 x 28
STATISTICS_COLUMNS = ("class", "label", "files", "packets", "sessions", "kept", "empty", "dns", "duplicate",
                      "ambiguous", "over_cap", "truncated", "padded", "mean_original_length",
                      "median_original_length", "mean_payload_packets")


class SessionDataset(NamedTuple):
    """images: uint8 (n, length); labels: uint8 (n,); class_numbers: {name: label};
    statistics: one dict per class (STATISTICS_COLUMNS) in label order, then the totals;
    notes: sentences about what was skipped (files no rule labels, unlabelled sessions)."""
    images: np.ndarray
    labels: np.ndarray
    class_numbers: dict
    statistics: list
    notes: list


class Labelled(NamedTuple):
    """The sessions of many files labelled: candidates, [(class name, session)] in the sorted
    order of the files and the order of their sessions (the dropped ones counted, not kept);
    per_class: {class: Counter of sessions, packets and each drop}; files_of_class: {class:
    paths}; unlabelled_ports: Counter of the server ports of the sessions no rule labels."""
    candidates: list
    per_class: dict
    files_of_class: dict
    unlabelled_ports: collections.Counter


def labelled_sessions(file_results, file_classes, label_by, rules):
    """The sessions of file_results ({path: FileSessions}) labelled: by their file's class
    (file_classes, label_by "folder" / "keywords") or by port (rules {port: class})."""
    labelled = Labelled([], collections.defaultdict(collections.Counter), collections.defaultdict(set),
                        collections.Counter())
    for path in sorted(file_results):
        if label_by != "port":  # the file's class is known even when the file holds no IP session
            counts = labelled.per_class[file_classes[path]]
            labelled.files_of_class[file_classes[path]].add(path)
            counts["frames"] += file_results[path].counts["packets"]
            counts["not_ip_frames"] += file_results[path].counts["not_ip_packets"]
        for session in file_results[path].sessions:
            name = file_classes.get(path) if label_by != "port" else labels_lib.session_label(
                session.server_port, session.client_port, rules)
            if name is None:
                if session.dropped != "dns":  # a DNS session is dropped whatever its label
                    labelled.unlabelled_ports[session.server_port] += 1
                continue
            counts = labelled.per_class[name]
            labelled.files_of_class[name].add(path)
            counts["sessions"] += 1
            counts["packets"] += session.n_packets
            if session.dropped:
                counts[session.dropped] += 1
            else:
                labelled.candidates.append((name, session))
    return labelled


def statistics_rows(labelled, numbers, kept_by_class, length, extra=None):
    """The statistics rows (class_row) of each class, in label order then the classes with no
    session kept, and the totals; extra(name) adds columns to a class's row (name None: the totals')."""
    per_class, files = labelled.per_class, labelled.files_of_class
    rows = [dict(class_row(name, numbers.get(name, ""), len(files[name]), per_class[name],
                           kept_by_class.get(name, []), length), **(extra(name) if extra else {}))
            for name in sorted(per_class, key=lambda name: (name not in numbers, numbers.get(name, 0), name))]
    every_kept = [session for name in numbers for session in kept_by_class[name]]
    rows.append(dict(class_row("total", "", len(set().union(*files.values())) if files else 0,
                               sum(per_class.values(), collections.Counter()), every_kept, length),
                     **(extra(None) if extra else {})))
    return rows


def skipped_notes(labelled, numbers):
    """Sentences about what no class kept: the sessions no rule labels (their commonest ports),
    and the classes left without a session."""
    notes = []
    unlabelled = labelled.unlabelled_ports
    if unlabelled:
        common = ", ".join(f"{port} ({n})" for port, n in unlabelled.most_common(10))
        notes.append(f"{sum(unlabelled.values())} sessions have no port in label_mapping and are skipped; "
                     f"their most common server ports (sessions): {common}")
    for name in sorted(set(labelled.per_class) - set(numbers)):
        counts = labelled.per_class[name]
        if counts["sessions"] == 0 and counts["frames"]:
            why = (f"its {len(labelled.files_of_class[name])} file(s) hold no TCP or UDP session over IP "
                   f"({counts['frames']} frames, {counts['not_ip_frames']} of them not IP: ARP or other link-layer "
                   f"frames)")
        elif counts["sessions"] == 0:
            why = f"its {len(labelled.files_of_class[name])} file(s) hold no packet"
        else:
            why = f"none of its {counts['sessions']} sessions was kept (see its row)"
        notes.append(f"class {name}: {why}, so it is left out and has no label")
    return notes


def build_dataset(file_results, file_classes, label_by, rules, length, max_per_class=None, seed=0):
    """The dataset of the sessions in file_results ({path: FileSessions}), labelled as
    labelled_sessions does. A session is kept unless it is empty, DNS, unlabelled, an exact
    duplicate of a kept one of its class, or ambiguous (the same bytes under two classes:
    nothing in them can tell the classes apart). max_per_class keeps a seeded random sample of
    a larger class. The order is shuffled with the seed."""
    labelled = labelled_sessions(file_results, file_classes, label_by, rules)
    kept_by_class = _unique_per_class(labelled)
    rng = np.random.default_rng(seed)
    numbers = labels_lib.class_numbers(kept_by_class)
    if len(numbers) > 256:
        raise ValueError(f"{len(numbers)} classes: IDX1 labels are single bytes, so 256 classes at most")
    kept = []
    for name in numbers:  # sorted: the sample of each class depends on the seed alone
        sessions = kept_by_class[name]
        if max_per_class is not None and len(sessions) > max_per_class:
            chosen = np.sort(rng.choice(len(sessions), max_per_class, replace=False))
            labelled.per_class[name]["over_cap"] += len(sessions) - max_per_class
            sessions = kept_by_class[name] = [sessions[i] for i in chosen]
        kept += sessions
    order = rng.permutation(len(kept))
    images = np.frombuffer(b"".join(kept[i][1] for i in order), dtype=np.uint8).reshape(len(kept), length)
    labels = np.array([numbers[kept[i][0]] for i in order], dtype=np.uint8)
    return SessionDataset(images, labels, numbers, statistics_rows(labelled, numbers, kept_by_class, length),
                          skipped_notes(labelled, numbers))


def _unique_per_class(labelled):
    """{class: [(class, image, original length, payload packets)]} of the candidates that are
    neither an exact duplicate of a kept one of their class nor ambiguous (counted in per_class)."""
    candidates = [(name, session.image, session.original_length, session.n_payload_packets)
                  for name, session in labelled.candidates]
    classes_of_digest = collections.defaultdict(set)
    digests = [hashlib.blake2b(image, digest_size=16).digest() for _, image, _, _ in candidates]
    for (name, _, _, _), digest in zip(candidates, digests):
        classes_of_digest[digest].add(name)
    kept_by_class, seen = collections.defaultdict(list), set()
    for candidate, digest in zip(candidates, digests):
        name = candidate[0]
        if len(classes_of_digest[digest]) > 1:
            labelled.per_class[name]["ambiguous"] += 1
        elif digest in seen:
            labelled.per_class[name]["duplicate"] += 1
        else:
            seen.add(digest)
            kept_by_class[name].append(candidate)
    return kept_by_class


def class_row(name, label, n_files, counts, kept, length):
    """A class's statistics row (STATISTICS_COLUMNS): counts is a Counter of its sessions,
    packets and filtered sessions; kept: (class, image, original length, payload packets)
    of each kept session."""
    original_lengths = [original for _, _, original, _ in kept]
    return {"class": name, "label": label, "files": n_files, "packets": counts["packets"],
            "sessions": counts["sessions"], "kept": len(kept), "empty": counts["empty"], "dns": counts["dns"],
            "duplicate": counts["duplicate"], "ambiguous": counts["ambiguous"], "over_cap": counts["over_cap"],
            "truncated": sum(original > length for original in original_lengths),
            "padded": sum(original < length for original in original_lengths),
            "mean_original_length": round(statistics.fmean(original_lengths), 1) if kept else "",
            "median_original_length": float(statistics.median(original_lengths)) if kept else "",
            "mean_payload_packets": round(statistics.fmean(n for _, _, _, n in kept), 1) if kept else ""}


def statistics_table(rows):
    """The per-class statistics as an aligned text table (for people); a "test" column when the
    rows have one (a recipe that splits off a test set)."""
    columns = STATISTICS_COLUMNS + (("test",) if rows and "test" in rows[0] else ())
    headers = ["class", "label", "files", "packets", "sessions", "kept", "empty", "DNS", "duplicate",
               "ambiguous", "over cap", "truncated", "padded", "mean length", "median length", "payload pkts",
               "test"][:len(columns)]
    cells = [[str(row[column]) for column in columns] for row in rows]
    widths = [max(len(header), *(len(line[i]) for line in cells)) for i, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) if i == 0 else header.rjust(width)
                       for i, (header, width) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(line, widths))) for line in cells]
    return "\n".join(lines)


# The filters that drop sessions, by statistics column, and what each one drops.
FILTERS = {"empty": "sessions without a payload byte", "dns": "DNS sessions (drop_dns)",
           "duplicate": "exact duplicates", "ambiguous": "sessions the same in two classes"}
SMALL_CLASS_SESSIONS, SMALL_CLASS_FRACTION = 10, 0.01


def class_warnings(rows):
    """Sentences about classes in trouble, from the statistics rows: a filter that removed more
    than half of a class's sessions (naming the class, the filter and the counts), a class left
    with fewer than SMALL_CLASS_SESSIONS sessions or SMALL_CLASS_FRACTION of the largest class's."""
    classes = rows[:-1]  # the last row is the totals
    largest = max(classes, key=lambda row: row["kept"], default=None)
    warnings = []
    for row in classes:
        for column, what in FILTERS.items():
            if row[column] * 2 > row["sessions"]:
                warnings.append(f"class {row['class']}: {row[column]} of its {row['sessions']} sessions were "
                                f"dropped as {what}, more than half; {row['kept']} kept")
        if row["kept"] < SMALL_CLASS_SESSIONS or row["kept"] < SMALL_CLASS_FRACTION * largest["kept"]:
            split = (f" ({row['kept'] - row['test']} training, {row['test']} test: B01_NAS.py needs num_folds "
                     f"training sessions of each class)" if "test" in row else "")
            warnings.append(f"class {row['class']}: {row['kept']} sessions kept{split}, fewer than "
                            f"{SMALL_CLASS_SESSIONS} or than {SMALL_CLASS_FRACTION:.0%} of the largest class's "
                            f"({largest['class']}, {largest['kept']})")
        if "test" in row and row["kept"] and not row["test"]:
            warnings.append(f"class {row['class']}: its test tenth of {row['kept']} sessions rounds to none, so the "
                            f"test figures say nothing of it")
    return warnings


def output_paths(output_dir, output_name):
    """{what: path} of the files a conversion with the origin recipe writes."""
    return {"images": os.path.join(output_dir, f"{output_name}_sessions.idx3"),
            "labels": os.path.join(output_dir, f"{output_name}_labels.idx1"),
            "classes": os.path.join(output_dir, f"{output_name}_labels.json"),
            "statistics": os.path.join(output_dir, f"{output_name}_statistics.csv"),
            "report": os.path.join(output_dir, f"{output_name}_report.txt")}


def check_output(paths, overwrite):
    """Raises ValueError naming the output folder or the file in the way when the outputs
    ({what: path}, all in one folder) cannot be written there (before any capture is read):
    the folder cannot be made or written to, or a file of the same name exists and
    overwrite is False."""
    output_dir = os.path.dirname(next(iter(paths.values())))
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise ValueError(f"output_dir={output_dir}: cannot write there ({error.strerror or error})") from None
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(f"{existing[0]} exists (a previous conversion?): choose another output_name, "
                         f"or set overwrite=True to replace it")


def check_output_name(output_name):
    """Raises ValueError unless output_name can prefix file names."""
    if not output_name or os.sep in output_name or "/" in output_name or output_name in (".", ".."):
        raise ValueError(f"output_name={output_name!r}: must be a file name prefix, without a path separator")


def dataset_contents(dataset):
    """{what: bytes} of the origin recipe's IDX pair: 784 bytes as 28 x 28, any other length as 1 x length."""
    n_sessions, length = dataset.images.shape
    shape = (28, 28) if length == IDX_SQUARE_LENGTH else (1, length)
    return {"images": idx_bytes(dataset.images.reshape(n_sessions, *shape)), "labels": idx_bytes(dataset.labels)}


def text_contents(dataset, report_text):
    """{what: text} of the files every recipe writes beside its IDX files: the class names'
    labels (JSON), the statistics (CSV, quoted where a class name needs it) and the report."""
    statistics = io.StringIO()
    columns = STATISTICS_COLUMNS + (("test",) if "test" in dataset.statistics[0] else ())
    writer = csv.DictWriter(statistics, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataset.statistics)
    return {"classes": json.dumps(dataset.class_numbers, indent=1) + "\n", "statistics": statistics.getvalue(),
            "report": report_text}


def write_files(contents, paths):
    """Writes each content ({what: bytes or text}) to paths[what]. Every file is written whole
    beside its place first and then renamed into it, so a failure (a full disk, Ctrl-C) leaves
    the previous files as they were and no partial file behind. Text is written as UTF-8.
    Raises ValueError naming the file when writing fails; returns paths."""
    written = []
    try:
        for what, content in contents.items():
            partial = paths[what] + ".partial"
            written.append(partial)
            with open(partial, "wb") as file:
                file.write(content if isinstance(content, bytes) else content.encode("utf-8", "backslashreplace"))
        for what in contents:
            os.replace(paths[what] + ".partial", paths[what])
    except BaseException as error:
        for partial in written:
            if os.path.exists(partial):
                os.remove(partial)
        if isinstance(error, OSError):
            raise ValueError(f"writing {partial} failed ({error.strerror or error}); nothing was replaced") from None
        raise
    return paths
