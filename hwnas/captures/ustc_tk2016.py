"""The USTC-TK2016 tool's recipe: its sessions byte for byte, and its train / t10k IDX files.

Most published traffic-classification results (USTC-TFC2016, ISCX VPN-nonVPN and the CNN
papers that compare on them) are measured on 784-byte IDX files made by the USTC-TK2016
tool (Wang et al., 2017): SplitCap, a Windows program, cuts each capture into sessions,
then PowerShell and Python steps filter, cap, split and write them. This module does the
same on any system, so that a searched model can be set beside the papers' tables:

  - packets are grouped by 5-tuple (protocol, addresses, ports): both directions together
    ("session") or each direction alone ("flow"); TCP and UDP, IPv4 and IPv6. There is no
    timeout, and a FIN or RST does not end a session: a tuple's packets are one session;
  - layers "L7": a session's bytes are its packets' transport payloads in capture order,
    concatenated, no header at all; a session without a payload byte is dropped.
    layers "all": the session written as a classic pcap file: a 24-byte big-endian global
    header (magic a1b2c3d4, version 2.4, time zone 0, sigfigs 0, snap length 65535, the
    capture's link type), then per packet a 16-byte big-endian record header (seconds,
    microseconds, captured length, original length) and the frame exactly as captured,
    link layer included. Nothing is anonymised;
  - sessions whose complete bytes (before any cut) are identical are kept once, across the
    whole set (the first, in the sorted order of the files and the order of their sessions);
  - per class, the CAP_PER_CLASS largest sessions (by complete length) at most; a seeded
    tenth of each class (its count / 10, rounded half to even as .NET's Math.Round and
    Python's round do) is the test set;
  - each session is cut to its first SESSION_BYTES bytes, or zero-padded, stored 28 x 28;
  - the files: <name>-train-images-idx3-ubyte.gz, -train-labels-idx1-ubyte.gz,
    -t10k-images-idx3-ubyte.gz, -t10k-labels-idx1-ubyte.gz (the published names and
    format), class by class in label order, each class's sessions in capture order; labels
    in the class names' case-insensitive order (0 BitTorrent, 1 Facetime, 2 FTP, ... as
    published).
"""
import collections
import gzip
import hashlib
import os
import struct
from typing import NamedTuple

import numpy as np

from hwnas.captures import dataset as dataset_lib
from hwnas.captures import labels as labels_lib
from hwnas.captures.capture import CaptureReader, block_headers
from hwnas.captures.sessions import FILE_COUNTS, SPLIT_CHOICES, FileSessions, reversed_key, server_and_client_ports
from hwnas.data.idx import idx_bytes

LAYER_CHOICES = ("L7", "all")
SESSION_BYTES = 784  # the published files' 28 x 28
CAP_PER_CLASS = 60_000
PCAP_GLOBAL_HEADER = struct.Struct(">IHHiIII")  # magic, version major, minor, time zone, sigfigs, snap length, link type
PCAP_RECORD_HEADER = struct.Struct(">IIII")  # seconds, microseconds, captured length, original length
PCAP_MAGIC, PCAP_SNAP_LENGTH = 0xA1B2C3D4, 65535
# What the recipe fixes, and the origin recipe's parameter values that leave them unset.
FIXED_PARAMETERS = {"length": SESSION_BYTES, "udp_timeout_s": 10.0, "tcp_timeout_s": 120.0, "drop_dns": True,
                    "max_per_class": None, "ip_addresses": "zero", "hash_salt": "", "ports": "zero",
                    "zero_header_fields": True, "pad_udp_header": True}
WHAT_IT_DOES = {"length": f"every session is cut or padded to {SESSION_BYTES} bytes",
                "udp_timeout_s": "no timeout: a tuple's packets are one session",
                "tcp_timeout_s": "no timeout: a tuple's packets are one session",
                "drop_dns": "no port is dropped", "max_per_class": f"each class keeps its {CAP_PER_CLASS} largest sessions",
                "ip_addresses": "nothing is anonymised", "hash_salt": "nothing is anonymised",
                "ports": "nothing is anonymised", "zero_header_fields": "nothing is anonymised",
                "pad_udp_header": "L7 has no header; all keeps the frames as captured"}


class UstcSettings(NamedTuple):
    layers: str = "L7"
    split: str = "session"


class UstcSession(NamedTuple):
    """One session: its first SESSION_BYTES bytes (not padded), the length and a digest of its
    complete bytes, its packets, its ports (the server's: the destination of its first SYN,
    else of its first packet), and why it is dropped (None or "empty": no payload byte, L7)."""
    head: bytes
    complete_length: int
    digest: bytes
    n_packets: int
    server_port: int
    client_port: int
    dropped: object


def settings_of(parameters):
    """UstcSettings from B00_pcap_to_idx.py's parameters, checked: raises ValueError naming
    layers or split when its value is not valid, or a parameter the recipe fixes that is set
    beside it (its value is not the origin recipe's default)."""
    if parameters["layers"] not in LAYER_CHOICES:
        raise ValueError(f"layers={parameters['layers']!r}: must be one of {', '.join(LAYER_CHOICES)}")
    if parameters["split"] not in SPLIT_CHOICES:
        raise ValueError(f"split={parameters['split']!r}: must be one of {', '.join(SPLIT_CHOICES)}")
    set_beside = [name for name, unset in FIXED_PARAMETERS.items() if parameters[name] != unset]
    if set_beside:
        raise ValueError("recipe='USTC-TK2016' fixes " + "; ".join(
            f"{name} ({WHAT_IT_DOES[name]}), set to {parameters[name]!r}" for name in set_beside)
            + ". Leave them at their defaults, or use recipe='origin'")
    return UstcSettings(parameters["layers"], parameters["split"])


class _Session:
    __slots__ = ("order", "chunks", "n_head", "complete_length", "hasher", "n_packets", "server_port",
                 "client_port", "has_payload")


def sessions_of_file(path, settings, report_progress=None):
    """Reads one capture file into its USTC-TK2016 sessions; returns a FileSessions of
    UstcSession, in the order they started. Errors and damage as
    hwnas.captures.sessions.sessions_of_file (whose reading it shares)."""
    reader = CaptureReader(path)
    counts = dict.fromkeys(FILE_COUNTS, 0)
    sessions = {}  # (is_tcp, key of the first packet's direction or the canonical pair) -> _Session
    bidirectional = settings.split == "session"
    layers_all = settings.layers == "all"
    reported_bytes = 0
    for block in reader.blocks():
        headers = block_headers(block)
        counts["packets"] += len(block.starts)
        for name, n in zip(("unknown_link_packets", "malformed_packets", "not_ip_packets", "fragment_packets",
                            "other_protocol_packets"), headers.outcome_counts[1:]):
            counts[name] += n
        data = block.buffer
        for key, timestamp_s, flags, is_tcp, _, has_payload, _, _, end, version, payload_start, index in zip(
                *headers.columns):
            if bidirectional:
                session_key = (is_tcp, min(key, reversed_key(key, version)))
            else:
                session_key = (is_tcp, key)
            session = sessions.get(session_key)
            if session is None:
                session = sessions[session_key] = _new_session(len(sessions), key, flags, layers_all,
                                                               int(block.linktypes[index]))
            session.n_packets += 1
            counts["payload_packets" if has_payload else "no_payload_packets"] += 1
            session.has_payload = session.has_payload or has_payload
            if layers_all:  # the packet's record, as a pcap file holds it
                frame = data[block.starts[index]:block.stops[index]]
                microseconds = round(timestamp_s * 1e6)  # exact for a microsecond capture's timestamps
                _add(session, PCAP_RECORD_HEADER.pack(microseconds // 1_000_000, microseconds % 1_000_000,
                                                      len(frame), int(block.original_lengths[index])) + frame)
            elif has_payload:
                _add(session, data[payload_start:end])
        if report_progress is not None:
            report_progress(reader.bytes_read - reported_bytes)
            reported_bytes = reader.bytes_read
    if report_progress is not None:
        report_progress(reader.bytes_read - reported_bytes)
    records = []
    for session in sorted(sessions.values(), key=lambda s: s.order):
        dropped = None if layers_all or session.has_payload else "empty"
        counts["sessions"] += 1
        counts["empty_sessions"] += dropped == "empty"
        records.append(UstcSession(b"".join(session.chunks)[:SESSION_BYTES], session.complete_length,
                                   session.hasher.digest(), session.n_packets, session.server_port,
                                   session.client_port, dropped))
    return FileSessions(path, records, counts, reader.damage)


def _new_session(order, key, flags, layers_all, linktype):
    session = _Session()
    session.order, session.chunks, session.n_head, session.complete_length = order, [], 0, 0
    session.hasher, session.n_packets, session.has_payload = hashlib.blake2b(digest_size=16), 0, False
    session.server_port, session.client_port = server_and_client_ports(key, flags)
    if layers_all:
        _add(session, PCAP_GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, PCAP_SNAP_LENGTH, linktype))
    return session


def _add(session, piece):
    """Appends piece to the session's complete bytes: their length and digest, and the
    head kept (the first SESSION_BYTES bytes)."""
    session.complete_length += len(piece)
    session.hasher.update(piece)
    if session.n_head < SESSION_BYTES:
        session.chunks.append(bytes(piece[:SESSION_BYTES - session.n_head]))
        session.n_head += len(session.chunks[-1])


class UstcDataset(NamedTuple):
    """train / test: (images uint8 (n, SESSION_BYTES), labels uint8 (n,)); class_numbers:
    {name: label}; statistics: one dict per class (hwnas.captures.dataset's columns and
    "test"), then the totals; notes: sentences about what was skipped."""
    train: tuple
    test: tuple
    class_numbers: dict
    statistics: list
    notes: list


def build_dataset(file_results, file_classes, label_by, rules, seed=0, cap=CAP_PER_CLASS):
    """The train and test sets of the sessions in file_results ({path: FileSessions of
    UstcSession}), as the module docstring says; labels as hwnas.captures.dataset's."""
    labelled = dataset_lib.labelled_sessions(file_results, file_classes, label_by, rules)
    by_class = collections.defaultdict(list)  # name -> [(order, session)] kept after duplicates
    seen = set()
    for order, (name, session) in enumerate(labelled.candidates):
        identity = (session.complete_length, session.digest)
        if identity in seen:
            labelled.per_class[name]["duplicate"] += 1
        else:
            seen.add(identity)
            by_class[name].append((order, session))
    numbers = labels_lib.class_numbers(by_class, case_insensitive=True)
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "test": ([], [])}
    n_test = {}
    for name, number in numbers.items():  # label order: each class's draw depends on the seed alone
        sessions = by_class[name]
        if len(sessions) > cap:
            largest = sorted(sessions, key=lambda item: (-item[1].complete_length, item[0]))[:cap]
            labelled.per_class[name]["over_cap"] += len(sessions) - cap
            sessions = by_class[name] = sorted(largest)
        test = set(rng.choice(len(sessions), round(len(sessions) / 10), replace=False).tolist())
        for position, (_, session) in enumerate(sessions):
            images, labels = parts["test" if position in test else "train"]
            images.append(session.head + bytes(SESSION_BYTES - len(session.head)))
            labels.append(number)
        n_test[name] = len(test)
    _check_split(numbers, by_class, n_test)
    kept_by_class = {name: [_kept(session) for _, session in sessions] for name, sessions in by_class.items()}
    rows = dataset_lib.statistics_rows(labelled, numbers, kept_by_class, SESSION_BYTES,
                                       extra=lambda name: {"test": n_test.get(name, 0) if name else len(parts["test"][1])})

    def arrays(images, labels):
        return (np.frombuffer(b"".join(images), dtype=np.uint8).reshape(len(images), SESSION_BYTES),
                np.array(labels, dtype=np.uint8))

    return UstcDataset(arrays(*parts["train"]), arrays(*parts["test"]), numbers, rows,
                       dataset_lib.skipped_notes(labelled, numbers))


MIN_TRAINING_SESSIONS = 2  # B01_NAS.py folds each class: two folds at the fewest


def _check_split(numbers, by_class, n_test):
    """Raises ValueError when the split would give files B01_NAS.py refuses (before any is written): a
    test set of no session (every class's tenth rounds to 0), a class with fewer than
    MIN_TRAINING_SESSIONS training sessions (its folds would be empty)."""
    if len(numbers) >= 2 and not sum(n_test.values()):
        raise ValueError(f"the test tenth of every class rounds to 0 sessions (each has fewer than 5: "
                         f"{', '.join(f'{name} {len(by_class[name])}' for name in numbers)}), so the t10k files "
                         f"would be empty; add captures, or use recipe='origin' and B01_NAS.py's test_size")
    too_small = [f"{name} ({len(by_class[name]) - n_test[name]})" for name in numbers
                 if len(by_class[name]) - n_test[name] < MIN_TRAINING_SESSIONS]
    if too_small:
        raise ValueError(f"classes with fewer than {MIN_TRAINING_SESSIONS} training sessions, too few to fold: "
                         f"{', '.join(too_small)}; add captures of them or leave their folders out")


def _kept(session):
    """What a statistics row reads of a kept session: (class, image, original length, packets)."""
    return None, session.head, session.complete_length, session.n_packets


def output_paths(output_dir, output_name):
    """{what: path} of the files the recipe writes: the published four, and this toolkit's
    labels, statistics and report."""
    published = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
                 "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    paths = {what: os.path.join(output_dir, f"{output_name}-{name}") for what, name in published.items()}
    paths.update({what: os.path.join(output_dir, f"{output_name}_{name}") for what, name in
                  (("classes", "labels.json"), ("statistics", "statistics.csv"), ("report", "report.txt"))})
    return paths


def dataset_contents(dataset):
    """{what: bytes} of the four IDX files (gzip with no name and time in its header, so the
    same sessions give the same bytes)."""
    contents = {}
    for part in ("train", "test"):
        images, labels = getattr(dataset, part)
        contents[f"{part}_images"] = gzip.compress(idx_bytes(images.reshape(len(images), 28, 28)), mtime=0)
        contents[f"{part}_labels"] = gzip.compress(idx_bytes(labels), mtime=0)
    return contents
