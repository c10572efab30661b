"""The USTC-TK2016 recipe of B00_pcap_to_idx.py, checked on captures built here against a
reference written field by field: both layers, sessions and flows, TCP and UDP, IPv6,
payload-less sessions, duplicates across classes, the cap, the test tenth, the files."""
import csv
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from hwnas.data import idx as data_lib
from hwnas.captures import ustc_tk2016 as ustc_lib
from capture_builder import ethernet, ip_packet, linux_cooked, write_pcap, write_pcapng
from hwnas.captures.sessions import FileSessions, sessions_of_files

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT, SERVER, CLIENT6, SERVER6 = "10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"


def payload(n, seed):
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def transport_payload(ip_bytes):
    """The transport payload of an IP packet, read field by field (IPv4 IHL or IPv6's 40 bytes,
    then TCP's data offset or UDP's 8 bytes)."""
    if ip_bytes[0] >> 4 == 4:
        header, protocol, end = (ip_bytes[0] & 0x0F) * 4, ip_bytes[9], struct.unpack(">H", ip_bytes[2:4])[0]
    else:
        header, protocol, end = 40, ip_bytes[6], 40 + struct.unpack(">H", ip_bytes[4:6])[0]
    transport = ip_bytes[header:end]
    return transport[(transport[12] >> 4) * 4:] if protocol == 6 else transport[8:]


def capture():
    """(frames, {name: the IP packets of each expected USTC session, in capture order}): a TCP
    connection, closed and opened again on the same tuple (one session: no FIN ends it), a UDP
    exchange over IPv6 with a 20 s gap (one session: no timeout), a DNS lookup (kept), a SYN
    scan (no payload), and two tuples whose payloads are the same."""
    packets = {
        "tcp": [ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="S"), ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="SA"),
                ip_packet(CLIENT, SERVER, "tcp", 40000, 80, payload(300, 1), "PA"),
                ip_packet(SERVER, CLIENT, "tcp", 80, 40000, payload(600, 2), "PA"),
                ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="FA"), ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="R"),
                ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="S"),
                ip_packet(CLIENT, SERVER, "tcp", 40000, 80, payload(40, 3), "PA")],
        "udp6": [ip_packet(CLIENT6, SERVER6, "udp", 5000, 6000, payload(100, 4)),
                 ip_packet(SERVER6, CLIENT6, "udp", 6000, 5000, payload(50, 5)),
                 ip_packet(SERVER6, CLIENT6, "udp", 6000, 5000, payload(30, 6))],
        "dns": [ip_packet("10.0.0.3", "10.0.0.9", "udp", 7000, 53, payload(20, 7))],
        "scan": [ip_packet(CLIENT, "10.0.0.4", "tcp", 41000, 22, flags="S")],
        "same1": [ip_packet("10.0.0.5", "10.0.0.6", "udp", 1111, 2222, payload(30, 8))],
        "same2": [ip_packet("10.0.0.7", "10.0.0.8", "udp", 3333, 4444, payload(30, 8))],
    }
    order = [("tcp", 0), ("tcp", 1), ("udp6", 0), ("tcp", 2), ("udp6", 1), ("tcp", 3), ("tcp", 4), ("tcp", 5),
             ("dns", 0), ("scan", 0), ("tcp", 6), ("tcp", 7), ("same1", 0), ("same2", 0), ("udp6", 2)]
    times = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.125, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.25, 24.5]
    frames = [(time, ethernet(packets[name][index])) for time, (name, index) in zip(times, order)]
    return frames, packets, order, times


def pcap_file_bytes(frames, linktype=1):
    """A session written as a classic pcap file, field by field: the global header, then each
    packet's record header (seconds, microseconds, captured and original length) and frame."""
    data = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for time, frame in frames:
        seconds, microseconds = divmod(round(time * 1_000_000), 1_000_000)
        data += struct.pack(">IIII", seconds, microseconds, len(frame), len(frame)) + frame
    return data


@pytest.mark.parametrize("writer", [write_pcap, write_pcapng])
def test_l7_sessions_are_a_tuples_transport_payloads_in_capture_order(tmp_path, writer):
    frames, packets, _, _ = capture()
    writer(str(tmp_path / "c.pcap"), frames)
    result = ustc_lib.sessions_of_file(str(tmp_path / "c.pcap"), ustc_lib.UstcSettings("L7", "session"))
    expected = {name: b"".join(transport_payload(p) for p in packets[name]) for name in packets}
    # in the order the sessions start: tcp (0.0), udp6 (0.25), dns, scan, same1, same2
    names = ["tcp", "udp6", "dns", "scan", "same1", "same2"]
    assert [s.head for s in result.sessions] == [expected[name][:784] for name in names]
    assert [s.complete_length for s in result.sessions] == [len(expected[name]) for name in names]
    assert [s.n_packets for s in result.sessions] == [len(packets[name]) for name in names]
    assert [s.dropped for s in result.sessions] == [None, None, None, "empty", None, None]
    assert result.sessions[4].digest == result.sessions[5].digest  # the same bytes
    assert (result.sessions[0].server_port, result.sessions[2].server_port) == (80, 53)


def test_flows_take_each_direction_alone(tmp_path):
    frames, packets, order, _ = capture()
    write_pcap(str(tmp_path / "c.pcap"), frames)
    result = ustc_lib.sessions_of_file(str(tmp_path / "c.pcap"), ustc_lib.UstcSettings("L7", "flow"))
    tcp = packets["tcp"]
    client_to_server = b"".join(transport_payload(tcp[i]) for i in (2, 7))  # 0, 4, 6 carry none
    server_to_client = transport_payload(tcp[3])
    heads = [s.head for s in result.sessions]
    assert heads[0] == client_to_server and heads[1] == server_to_client  # started at 0.0 and 0.1
    udp6 = packets["udp6"]
    assert transport_payload(udp6[0]) in heads and transport_payload(udp6[1]) + transport_payload(udp6[2]) in heads
    assert len(result.sessions) == 8  # tcp x2, udp6 x2, dns, scan, same1, same2


@pytest.mark.parametrize("split", ["session", "flow"])
def test_all_layers_write_each_session_as_a_pcap_file_of_its_frames(tmp_path, split):
    frames, packets, order, times = capture()
    write_pcap(str(tmp_path / "c.pcap"), frames)
    result = ustc_lib.sessions_of_file(str(tmp_path / "c.pcap"), ustc_lib.UstcSettings("all", split))
    tcp_frames = [(time, frame) for (time, frame), (name, index) in zip(frames, order) if name == "tcp"]
    if split == "flow":
        tcp_frames = [(time, frame) for (time, frame), (name, index) in zip(frames, order)
                      if name == "tcp" and index in (0, 2, 4, 6, 7)]
    expected = pcap_file_bytes(tcp_frames)
    assert result.sessions[0].head == expected[:784] and result.sessions[0].complete_length == len(expected)
    scan = next(s for s in result.sessions if s.n_packets == 1 and s.server_port == 22)
    assert scan.dropped is None  # a session without payload is a pcap file all the same
    # a Linux cooked capture keeps its link type and its own frames
    cooked = [(time, linux_cooked(packets["dns"][0])) for time in (5.0,)]
    write_pcap(str(tmp_path / "sll.pcap"), cooked, linktype=113)
    (session,) = ustc_lib.sessions_of_file(str(tmp_path / "sll.pcap"), ustc_lib.UstcSettings("all", split)).sessions
    assert session.head == pcap_file_bytes(cooked, linktype=113)


def file_sessions(tmp_path, name, frames, settings=ustc_lib.UstcSettings()):
    path = str(tmp_path / f"{name}.pcap")
    write_pcap(path, frames)
    return path, ustc_lib.sessions_of_file(path, settings)


def udp_session_frames(count, size_of, seed, port=9000):
    """count one-packet UDP sessions of payload sizes size_of(i), each its own tuple."""
    return [(i * 0.5, ethernet(ip_packet(f"10.{seed}.{i // 250}.{i % 250 + 1}", "10.250.0.1", "udp", 20000 + i, port,
                                         payload(size_of(i), 1000 * seed + i)))) for i in range(count)]


def test_duplicates_across_classes_are_kept_once_and_classes_are_numbered_as_published(tmp_path):
    shared = udp_session_frames(3, lambda i: 50, seed=1)
    results, classes = {}, {}
    for class_name, frames in (("facetime", shared + udp_session_frames(20, lambda i: 60 + i, seed=2)),
                               ("FTP", shared + udp_session_frames(20, lambda i: 60 + i, seed=3)),
                               ("BitTorrent", udp_session_frames(20, lambda i: 60 + i, seed=4))):
        path, results[path] = file_sessions(tmp_path, class_name, frames)
        classes[path] = class_name
    dataset = ustc_lib.build_dataset(results, classes, "folder", None, seed=0)
    assert dataset.class_numbers == {"BitTorrent": 0, "facetime": 1, "FTP": 2}  # case-insensitive, as published
    rows = {row["class"]: row for row in dataset.statistics}
    # the three shared sessions are kept by the class of the first file in sorted order (FTP.pcap)
    assert (rows["FTP"]["kept"], rows["FTP"]["duplicate"]) == (23, 0)
    assert (rows["facetime"]["kept"], rows["facetime"]["duplicate"]) == (20, 3)
    train_images, train_labels = dataset.train
    test_images, test_labels = dataset.test
    assert len(train_labels) + len(test_labels) == 63
    images = np.concatenate([train_images, test_images])
    assert len({bytes(image) for image in images}) == 63


def test_each_class_keeps_its_largest_sessions_and_a_seeded_tenth_is_the_test_set(tmp_path):
    path, result = file_sessions(tmp_path, "zeus", udp_session_frames(25, lambda i: 10 + i, seed=5))
    other, other_result = file_sessions(tmp_path, "weibo", udp_session_frames(44, lambda i: 900, seed=6))
    results, classes = {path: result, other: other_result}, {path: "Zeus", other: "Weibo"}
    dataset = ustc_lib.build_dataset(results, classes, "folder", None, seed=3, cap=12)
    rows = {row["class"]: row for row in dataset.statistics}
    assert (rows["Zeus"]["kept"], rows["Zeus"]["over_cap"], rows["Zeus"]["test"]) == (12, 13, 1)  # round(1.2)
    assert (rows["Weibo"]["kept"], rows["Weibo"]["test"]) == (12, 1)
    zeus = dataset.class_numbers["Zeus"]
    kept = [image for images, labels in (dataset.train, dataset.test) for image, label in zip(images, labels)
            if label == zeus]
    lengths = sorted(int(np.count_nonzero(image)) for image in kept)  # random payloads: no zero byte in practice
    largest = [payload(10 + i, 5000 + i) for i in range(13, 25)]
    assert sorted(len(p) for p in largest) == sorted(len(bytes(image).rstrip(b"\0")) for image in kept)
    assert lengths[0] >= 20  # the 13 smallest (10 to 22 bytes) went over the cap
    # classes in label order, each class's sessions in capture order; the draw is the seed's
    train_labels = dataset.train[1].tolist()
    assert train_labels == sorted(train_labels)
    again = ustc_lib.build_dataset(results, classes, "folder", None, seed=3, cap=12)
    other_seed = ustc_lib.build_dataset(results, classes, "folder", None, seed=4, cap=12)
    assert (again.test[0] == dataset.test[0]).all()
    assert any((other_seed.test[0] != dataset.test[0]).any(axis=1))
    assert round(25 / 10) == 2 and round(15 / 10) == 2 and round(5 / 10) == 0  # halves to even


def run_b00(tmp_path, *overrides, expect_ok=True):
    result = subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "B00_pcap_to_idx.py"),
                             f"output_dir={tmp_path / 'out'}", "n_workers=1", *overrides],
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode == 0) == expect_ok, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def write_classes(root, sizes):
    """A class folder per name with one capture of 1-packet UDP sessions of the given payload sizes."""
    for seed, (name, class_sizes) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        write_pcap(str(root / name / f"{name.lower()}.pcap"),
                   udp_session_frames(len(class_sizes), lambda i: class_sizes[i], seed=seed + 10))


def test_b00_writes_the_published_files_and_refuses_what_the_recipe_fixes(tmp_path):
    root = tmp_path / "captures"
    write_classes(root, {"Gmail": [100 + i for i in range(30)], "MySQL": [900 + i for i in range(40)]})
    result = run_b00(tmp_path, f"input_dirs=['{root}']", "recipe=USTC-TK2016", "layers=L7", "output_name=ustc")
    out = tmp_path / "out"
    names = sorted(os.listdir(out))
    assert names == ["ustc-t10k-images-idx3-ubyte.gz", "ustc-t10k-labels-idx1-ubyte.gz",
                     "ustc-train-images-idx3-ubyte.gz", "ustc-train-labels-idx1-ubyte.gz",
                     "ustc_labels.json", "ustc_report.txt", "ustc_statistics.csv"]
    train = data_lib.read_idx3(str(out / "ustc-train-images-idx3-ubyte.gz"))
    test_labels = data_lib.read_idx1(str(out / "ustc-t10k-labels-idx1-ubyte.gz"))
    assert train.shape[1:] == (28, 28) and len(train) + len(test_labels) == 70
    assert sorted(test_labels.tolist()) == [0, 0, 0, 1, 1, 1, 1]  # round(3.0), round(4.0)
    raw = gzip.decompress((out / "ustc-train-images-idx3-ubyte.gz").read_bytes())
    assert raw[:16] == struct.pack(">IIII", 2051, len(train), 28, 28)
    assert json.loads((out / "ustc_labels.json").read_text()) == {"Gmail": 0, "MySQL": 1}
    assert "test_images_path=" in result.stdout
    for override, name in (("udp_timeout_s=5", "udp_timeout_s"), ("drop_dns=False", "drop_dns"),
                           ("length=1500", "length"), ("ip_addresses='keep'", "ip_addresses")):
        refused = run_b00(tmp_path, f"input_dirs=['{root}']", "recipe=USTC-TK2016", override, "output_name=x",
                          expect_ok=False)
        assert f"recipe='USTC-TK2016' fixes {name}" in refused.stderr
    refused = run_b00(tmp_path, f"input_dirs=['{root}']", "layers=all", "output_name=x", expect_ok=False)
    assert "layers='all': layers are the USTC-TK2016 recipe's" in refused.stderr
    assert not [name for name in os.listdir(out) if name.startswith("x")]


def test_the_same_captures_give_the_same_files_whatever_the_workers(tmp_path):
    frames, _, _, _ = capture()
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"c{index}.pcap"))
        write_pcap(paths[-1], frames[index:])
    settings = ustc_lib.UstcSettings("all", "session")
    one = sessions_of_files(paths, settings, 1, read_file=ustc_lib.sessions_of_file)
    two = sessions_of_files(paths, settings, 2, read_file=ustc_lib.sessions_of_file)
    assert all(isinstance(one[path], FileSessions) and one[path].sessions == two[path].sessions for path in paths)


def test_captures_to_the_published_files_to_a_search_on_their_own_test_split(tmp_path):
    """End to end: B00 with recipe USTC-TK2016, then B01_NAS.py on its train pair with its t10k pair
    as the test set; the per-class results name the classes."""
    root = tmp_path / "captures"
    write_classes(root, {"Outlook": [60 + (i % 5) for i in range(40)], "Skype": [700 + (i % 5) for i in range(40)]})
    run_b00(tmp_path, f"input_dirs=['{root}']", "recipe=USTC-TK2016", "output_name=pub")
    out = tmp_path / "out"
    search = subprocess.run(
        [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), f"images_path={out / 'pub-train-images-idx3-ubyte.gz'}",
         f"labels_path={out / 'pub-train-labels-idx1-ubyte.gz'}", f"test_images_path={out / 'pub-t10k-images-idx3-ubyte.gz'}",
         f"test_labels_path={out / 'pub-t10k-labels-idx1-ubyte.gz'}", f"logs_dir={tmp_path / 'logs'}",
         "n_generations=0", "epochs=2", "num_folds=2", "num_selected_folds=1", "n_workers=1", "population_size=2",
         "final_epochs=1"],
        capture_output=True, text=True, timeout=600)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "Data: 72 training / 8 test sessions (its own test pair) of length 784, 2 classes" in search.stdout
    (run_dir,) = [os.path.join(tmp_path / "logs", name) for name in os.listdir(tmp_path / "logs")]
    with open(os.path.join(run_dir, "per_class.csv")) as per_class_file:
        rows = list(csv.DictReader(per_class_file))
    assert [row["class"] for row in rows] == ["Outlook", "Skype", "macro average"]
    assert [row["support"] for row in rows] == ["4", "4", "8"]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert float(rows[-1]["f1"]) == pytest.approx(summary["test_macro_f1"], abs=1e-4)
    assert float(rows[-1]["deployed_f1"]) == pytest.approx(summary["deployed_test_macro_f1"], abs=1e-4)
    assert os.path.getsize(os.path.join(run_dir, "confusion.png")) > 10_000
    assert "macro-F1" in open(os.path.join(run_dir, "nas_log.txt")).read()


@pytest.mark.parametrize("sizes, message", [
    ({"Facetime": 1, "Gmail": 4}, "the test tenth of every class rounds to 0 sessions (each has fewer than 5: "
                                  "Facetime 1, Gmail 4), so the t10k files would be empty"),
    ({"Facetime": 30, "Gmail": 1}, "classes with fewer than 2 training sessions, too few to fold: Gmail (1)"),
])
def test_a_split_b01_would_refuse_is_refused_by_name_and_nothing_is_written(tmp_path, sizes, message):
    root = tmp_path / "captures"
    write_classes(root, {name: [200 + i for i in range(n)] for name, n in sizes.items()})
    refused = run_b00(tmp_path, f"input_dirs=['{root}']", "recipe=USTC-TK2016", "output_name=small", expect_ok=False)
    assert message in refused.stderr and "Traceback" not in refused.stderr
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_a_class_without_a_test_session_is_warned_about_and_searched(tmp_path):
    root = tmp_path / "captures"
    write_classes(root, {"Facetime": [200 + i for i in range(30)], "Gmail": [400 + i for i in range(4)]})
    result = run_b00(tmp_path, f"input_dirs=['{root}']", "recipe=USTC-TK2016", "output_name=few")
    warning = "class Gmail: its test tenth of 4 sessions rounds to none, so the test figures say nothing of it"
    assert warning in result.stdout and warning in (tmp_path / "out" / "few_report.txt").read_text()
    assert "(4 training, 0 test: B01_NAS.py needs num_folds training sessions of each class)" in result.stdout
    out = tmp_path / "out"
    assert data_lib.read_idx1(str(out / "few-t10k-labels-idx1-ubyte.gz")).tolist() == [0, 0, 0]
