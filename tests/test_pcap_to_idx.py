"""B00_pcap_to_idx.py and its library: captures built here with known sessions, checked
byte for byte; labels, duplicates, the cap, statistics; bad input; and one capture
taken through B00 and a tiny B01_NAS.py search."""
import csv
import json
import os
import struct
import subprocess
import sys

import dpkt
import numpy as np
import pytest

from hwnas.data import idx as data_lib
from capture_builder import (anonymised, ethernet, ip_packet, linux_cooked, with_ipv4_options, with_ipv6_headers,
                             write_pcap, write_pcapng)
from hwnas.captures.capture import CaptureError, CaptureReader
from hwnas.captures.labels import LABEL_PRESETS, check_labelling, file_label
from hwnas.captures.sessions import SessionSettings, sessions_of_file, sessions_of_files

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT6, SERVER6 = "fd00::1", "fd00::2"


def payload(n, seed):
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def mixed_capture():
    """(frames, the IP packets each expected session is made of, in the order the sessions start)."""
    a_request, a_answer = ip_packet(CLIENT, SERVER, "tcp", 40000, 80, payload(300, 1), "PA"), \
        ip_packet(SERVER, CLIENT, "tcp", 80, 40000, payload(600, 2), "PA")
    b_out, b_back = ip_packet(CLIENT6, SERVER6, "udp", 5000, 6000, payload(100, 3)), \
        ip_packet(SERVER6, CLIENT6, "udp", 6000, 5000, payload(50, 4))
    c_request = ip_packet(CLIENT, SERVER, "tcp", 40000, 80, payload(40, 5), "PA")
    g1 = ip_packet("10.0.0.5", "10.0.0.6", "udp", 1111, 2222, payload(30, 6))
    g2 = ip_packet("10.0.0.7", "10.0.0.8", "udp", 3333, 4444, payload(30, 6))  # the same once anonymised
    b_later = ip_packet(SERVER6, CLIENT6, "udp", 6000, 5000, payload(30, 7))
    icmp = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=1, data=dpkt.icmp.ICMP(type=8, data=b"ping"))
    frames = [
        (0.0, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="S"))),
        (0.1, ethernet(ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="SA"))),
        (0.2, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="A"))),
        (0.3, ethernet(b_out, vlan_ids=[7])),
        (0.4, ethernet(a_request)),
        (0.5, ethernet(b_back, vlan_ids=[7, 8])),  # QinQ: two tags
        (0.6, ethernet(a_answer)),
        (0.7, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="FA"))),
        (0.8, ethernet(ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="FA"))),
        (0.9, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="A"))),
        (1.0, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000, 80, flags="S"))),  # a new connection: session C
        (1.1, ethernet(ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="SA"))),
        (1.2, ethernet(c_request)),
        (1.3, ethernet(ip_packet(SERVER, CLIENT, "tcp", 80, 40000, flags="R"))),
        (1.4, ethernet(ip_packet("10.0.0.3", "10.0.0.9", "udp", 7000, 53, payload(20, 8)))),  # DNS
        (1.5, ethernet(bytes(icmp))),
        (1.6, b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(46)),  # ARP
        (2.0, ethernet(g1)),
        (2.1, ethernet(g2)),
        (20.5, ethernet(b_later, vlan_ids=[7])),  # 20 s after B's last packet: a new UDP session
    ]
    sessions = [[a_request, a_answer], [b_out, b_back], [c_request], [g1], [g2], [b_later]]
    return frames, sessions


def expected_image(packets, length=784, **options):
    joined = b"".join(anonymised(packet, **options) for packet in packets)
    return (joined + bytes(length))[:length], len(joined)


@pytest.mark.parametrize("writer", ["pcap", "pcap-nano", "pcapng"])
def test_packets_and_timestamps_equal_dpkts_readers(tmp_path, writer):
    frames, _ = mixed_capture()
    path = str(tmp_path / f"mixed.{writer[:6]}")
    if writer == "pcapng":
        write_pcapng(path, frames)
        reference = list(dpkt.pcapng.Reader(open(path, "rb")))
    else:
        write_pcap(path, frames, nano=writer == "pcap-nano")
        reference = list(dpkt.pcap.Reader(open(path, "rb")))
    ours = list(CaptureReader(path).packets())
    assert [packet for _, _, packet in ours] == [packet for _, packet in reference] == [f for _, f in frames]
    assert [round(t, 6) for t, _, _ in ours] == [round(float(t), 6) for t, _ in reference]
    assert {linktype for _, linktype, _ in ours} == {1}


def big_endian_captures(frames):
    """The frames as a big-endian pcap (nanoseconds) and a big-endian pcapng with two sections, the
    second with a nanosecond interface, an interface statistics block and an enhanced packet block
    carrying an option: what other writers than dpkt's produce."""
    pcap = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) + b"".join(
        struct.pack(">IIII", int(t), round((t - int(t)) * 1e9), len(f), len(f)) + f for t, f in frames)

    def block(block_type, body):
        body += bytes(-len(body) % 4)
        return struct.pack(">II", block_type, len(body) + 12) + body + struct.pack(">I", len(body) + 12)

    def packet_block(ticks, frame, options=b""):
        padded = frame + bytes(-len(frame) % 4)
        return block(6, struct.pack(">IIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame)) +
                     struct.pack(">I", len(frame)) + padded + options)

    section = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    half = len(frames) // 2
    pcapng = section + block(1, struct.pack(">HHI", 1, 0, 65535)) + b"".join(
        packet_block(round(t * 1e6), f) for t, f in frames[:half])
    nanosecond_interface = block(1, struct.pack(">HHI", 1, 0, 65535) + struct.pack(">HHB3x", 9, 1, 9) +
                                 struct.pack(">HH", 0, 0))
    pcapng += section + nanosecond_interface + b"".join(
        packet_block(round(t * 1e9), f, options=struct.pack(">HHI", 2, 4, 1) + struct.pack(">HH", 0, 0))
        for t, f in frames[half:]) + block(5, struct.pack(">III", 0, 0, 0))
    return pcap, pcapng


def test_big_endian_files_other_writers_produce(tmp_path):
    frames, _ = mixed_capture()
    pcap, pcapng = big_endian_captures(frames)
    for name, content in (("be.pcap", pcap), ("be.pcapng", pcapng)):
        (tmp_path / name).write_bytes(content)
        packets = list(CaptureReader(str(tmp_path / name)).packets())
        assert [packet for _, _, packet in packets] == [frame for _, frame in frames], name
        assert [round(t, 6) for t, _, _ in packets] == [round(t, 6) for t, _ in frames], name
        assert {linktype for _, linktype, _ in packets} == {1}
    little = str(tmp_path / "le.pcap")
    write_pcap(little, frames)
    assert sessions_of_file(str(tmp_path / "be.pcapng"), SessionSettings(length=784)).sessions == \
        sessions_of_file(little, SessionSettings(length=784)).sessions


@pytest.mark.parametrize("writer", ["pcap", "pcapng"])
def test_sessions_are_the_anonymised_ip_packets_concatenated_in_time_order(tmp_path, writer):
    frames, sessions = mixed_capture()
    path = str(tmp_path / "mixed.cap")
    (write_pcapng if writer == "pcapng" else write_pcap)(path, frames)
    result = sessions_of_file(path, SessionSettings(length=784))
    kept = [record for record in result.sessions if record.dropped is None]
    assert len(kept) == len(sessions)
    for record, packets in zip(kept, sessions):
        image, original_length = expected_image(packets)
        assert record.image == image
        assert record.original_length == original_length
        assert record.n_payload_packets == len(packets)
    assert kept[0].original_length > 784 and kept[1].original_length < 784  # one cut, one padded
    assert (kept[0].server_port, kept[0].client_port) == (80, 40000)  # from the SYN
    assert kept[0].n_packets == 8  # handshake, two payload packets, the closing three
    assert [record.dropped for record in result.sessions].count("dns") == 1
    counts = result.counts
    assert counts["packets"] == len(frames)
    assert counts["not_ip_packets"] == 1 and counts["other_protocol_packets"] == 1
    assert counts["no_payload_packets"] == 9 and counts["payload_packets"] == 9
    assert counts["sessions"] == 7 and result.damage is None


def test_link_layers_and_ipv6_give_the_same_sessions(tmp_path):
    """Linux cooked capture, raw IP and Ethernet of one TCP exchange over IPv6 give one session, the same bytes."""
    packets = [ip_packet(CLIENT6, SERVER6, "tcp", 40001, 443, payload(200, 9), "PA"),
               ip_packet(SERVER6, CLIENT6, "tcp", 443, 40001, payload(900, 10), "PA")]
    images = []
    for name, linktype, frame in [("eth", 1, ethernet), ("sll", 113, linux_cooked), ("raw", 101, lambda p: p)]:
        path = str(tmp_path / f"{name}.pcap")
        write_pcap(path, [(i * 0.1, frame(packet)) for i, packet in enumerate(packets)], linktype=linktype)
        [record] = sessions_of_file(path, SessionSettings(length=784)).sessions
        images.append(record.image)
    assert images[0] == images[1] == images[2] == expected_image(packets)[0]


def test_ip_options_extension_headers_fragments_and_short_packets(tmp_path):
    """IPv4 options and IPv6 extension headers are kept and stepped over; later fragments, packets
    shorter than their headers and non-IP frames are counted and skipped; BSD loopback and Linux
    cooked v2 links are read."""
    options = with_ipv4_options(ip_packet(CLIENT, SERVER, "tcp", 40002, 25, payload(50, 20), "PA"))
    hop_by_hop = with_ipv6_headers(ip_packet(CLIENT6, SERVER6, "udp", 5001, 5002, payload(70, 21)),
                                   [(0, b"\x00\x01\x04\x00\x00\x00\x00"),  # hop-by-hop: PadN
                                    (44, b"\x00\x00\x01\x00\x00\x00\x07")])  # first fragment: offset 0, more
    later_fragment = bytearray(ip_packet(CLIENT, SERVER, "udp", 1, 2, payload(40, 22)))
    later_fragment[6:8] = b"\x00\x10"  # fragment offset 16 x 8 bytes: no ports in it
    frames = [(0.0, ethernet(options)), (0.1, ethernet(hop_by_hop)), (0.2, ethernet(bytes(later_fragment))),
              (0.3, ethernet(options)[:30]), (0.4, b"\x00" * 12 + b"\x88\xcc" + bytes(46))]  # cut short; LLDP
    path = str(tmp_path / "odd.pcap")
    write_pcap(path, frames)
    result = sessions_of_file(path, SessionSettings(length=784))
    assert [record.image for record in result.sessions] == [expected_image([options])[0],
                                                            expected_image([hop_by_hop])[0]]
    assert result.sessions[0].server_port == 25
    counts = result.counts
    assert (counts["fragment_packets"], counts["malformed_packets"], counts["not_ip_packets"]) == (1, 1, 1)
    for linktype, link_header in [(0, b"\x02\x00\x00\x00"), (276, b"\x08\x00" + bytes(18))]:
        other_path = str(tmp_path / f"link{linktype}.pcap")
        write_pcap(other_path, [(0.0, link_header + options)], linktype=linktype)
        assert [r.image for r in sessions_of_file(other_path, SessionSettings(length=784)).sessions] == \
            [expected_image([options])[0]]


def test_anonymisation_options(tmp_path):
    frames, sessions = mixed_capture()
    path = str(tmp_path / "mixed.pcap")
    write_pcap(path, frames)
    for options in [dict(ip_addresses="remove", ports="keep"), dict(ip_addresses="keep", zero_header_fields=False,
                                                                     pad_udp_header=False)]:
        settings = SessionSettings(length=784, **options)
        kept = [r for r in sessions_of_file(path, settings).sessions if r.dropped is None]
        for record, packets in zip(kept, sessions):
            assert (record.image, record.original_length) == expected_image(packets, **options)
    hashed = [r for r in sessions_of_file(path, SessionSettings(length=784, ip_addresses="hash", hash_salt=b"k1")).sessions
              if r.dropped is None]
    again = [r for r in sessions_of_file(path, SessionSettings(length=784, ip_addresses="hash", hash_salt=b"k1")).sessions
             if r.dropped is None]
    other_salt = [r for r in sessions_of_file(path, SessionSettings(length=784, ip_addresses="hash", hash_salt=b"k2")).sessions
                  if r.dropped is None]
    assert hashed[0].image == again[0].image != other_salt[0].image
    client, server = hashed[0].image[12:16], hashed[0].image[16:20]  # request: client to server
    assert client not in (bytes(4), bytes([10, 0, 0, 1])) and client != server
    answer_at = 40 + 300  # the answer's addresses are swapped: the same host, the same bytes
    assert hashed[0].image[answer_at + 12:answer_at + 20] == server + client


def test_the_defaults_keep_no_byte_that_names_the_host_or_the_server_port(tmp_path):
    """Two sessions with the same payloads but other hosts, ports, TTLs, IDs are the same bytes by default."""
    def session(client, server, server_port, ttl, ident):
        return [ip_packet(client, server, "tcp", 50000 + ttl, server_port, payload(120, 11), "PA", ttl=ttl,
                          ident=ident),
                ip_packet(server, client, "tcp", server_port, 50000 + ttl, payload(90, 12), "PA", ttl=ttl + 1,
                          ident=ident + 7)]
    one, other = session("10.1.1.1", "10.2.2.2", 443, 64, 100), session("192.168.0.9", "172.16.0.1", 8883, 128, 999)
    for name, packets in [("one", one), ("other", other)]:
        write_pcap(str(tmp_path / f"{name}.pcap"), [(i, ethernet(p)) for i, p in enumerate(packets)])
    default = [sessions_of_file(str(tmp_path / f"{n}.pcap"), SessionSettings(length=784)).sessions[0].image
               for n in ("one", "other")]
    kept_ports = [sessions_of_file(str(tmp_path / f"{n}.pcap"), SessionSettings(length=784, ports="keep")).sessions[0].image
                  for n in ("one", "other")]
    assert default[0] == default[1]
    assert kept_ports[0] != kept_ports[1]


def test_flows_split_the_directions(tmp_path):
    frames, sessions = mixed_capture()
    path = str(tmp_path / "mixed.pcap")
    write_pcap(path, frames)
    kept = [r for r in sessions_of_file(path, SessionSettings(length=784, split="flow")).sessions if r.dropped is None]
    images = [record.image for record in kept]
    assert expected_image(sessions[0][:1])[0] in images and expected_image(sessions[0][1:])[0] in images
    assert expected_image(sessions[0])[0] not in images


def test_many_files_give_the_same_sessions_whatever_the_workers(tmp_path):
    frames, _ = mixed_capture()
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"f{i}.pcap"))
        write_pcap(paths[-1], frames[i * 3:])
    one = sessions_of_files(paths, SessionSettings(length=784), n_workers=1)
    two = sessions_of_files(paths, SessionSettings(length=784), n_workers=2)
    assert {p: r.sessions for p, r in one.items()} == {p: r.sessions for p, r in two.items()}


def test_keyword_presets_label_the_public_capture_sets():
    iscx = check_labelling("keywords", "ISCX-VPN-nonVPN")
    assert len(set(iscx.values())) == 12
    expected = {"aim_chat_3a.pcap": "Chat", "vpn_aim_chat1a.pcap": "VPN-Chat", "email1a.pcap": "Email",
                "vpn_email2a.pcap": "VPN-Email", "skype_file1.pcap": "File", "sftpDown1.pcap": "File",
                "vpn_skype_files1a.pcap": "VPN-File", "Torrent01.pcapng": "P2P", "vpn_bittorrent.pcap": "VPN-P2P",
                "youtube1.pcap": "Streaming", "vpn_netflix_A.pcap": "VPN-Streaming",
                "skype_audio1a.pcap": "VoIP", "vpn_voipbuster1a.pcap": "VPN-VoIP"}
    for name, label in expected.items():
        assert file_label(f"/caps/{name}", "/caps", "keywords", iscx) == (label, None), name
    assert file_label("/caps/browsing1.pcap", "/caps", "keywords", iscx)[0] is None  # not one of the 12
    ustc = check_labelling("keywords", "USTC-TFC2016")
    assert len(set(ustc.values())) == 20 == len(LABEL_PRESETS["USTC-TFC2016"])
    assert file_label("/u/SMB-1.pcap", "/u", "keywords", ustc) == ("SMB", None)
    assert file_label("/u/Nsis-ay.pcap", "/u", "keywords", ustc) == ("Nsis-ay", None)
    tie = file_label("/c/ab.pcap", "/c", "keywords", {"a": "x", "b": "y"})
    assert tie[0] is None and "x, y" in tie[1]


def run_b00(tmp_path, *overrides, expect_ok=True):
    result = subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "B00_pcap_to_idx.py"),
                             f"output_dir={tmp_path / 'out'}", *overrides],
                            capture_output=True, text=True, timeout=300)
    if expect_ok:
        assert result.returncode == 0, result.stderr + result.stdout
    else:
        assert result.returncode != 0, result.stdout
        assert "Traceback" not in result.stderr, result.stderr
    return result


def class_folders(tmp_path):
    """captures/web (two files), captures/voice (one pcapng, one Linux cooked) and their expected sessions."""
    frames, sessions = mixed_capture()
    root = tmp_path / "captures"
    (root / "web").mkdir(parents=True)
    (root / "voice").mkdir()
    write_pcap(str(root / "web" / "a.pcap"), frames)
    write_pcap(str(root / "web" / "b.pcap"), frames[:14])  # sessions A and C again: duplicates
    voice = [ip_packet("10.9.0.1", "10.9.0.2", "udp", 7078, 7078 + i, payload(160, 100 + i)) for i in range(5)]
    write_pcapng(str(root / "voice" / "call.pcapng"), [(i * 0.02, ethernet(p)) for i, p in enumerate(voice)])
    write_pcap(str(root / "voice" / "sll.pcap"), [(0.0, linux_cooked(voice[0])), (1.0, linux_cooked(sessions[3][0]))],
               linktype=113)  # voice[0] repeats a voice session; sessions[3] (G1) is also web's: ambiguous
    return root, sessions, voice


def test_folder_labels_duplicates_statistics_and_the_idx_files(tmp_path):
    root, sessions, voice = class_folders(tmp_path)
    result = run_b00(tmp_path, f"input_dirs=['{root}']", "output_name=t", "n_workers=2")
    out = tmp_path / "out"
    classes = json.loads((out / "t_labels.json").read_text())
    assert classes == {"voice": 0, "web": 1}
    images = data_lib.read_idx3(str(out / "t_sessions.idx3"))
    labels = data_lib.read_idx1(str(out / "t_labels.idx1"))
    assert images.shape[1:] == (28, 28)
    found = {(bytes(image.reshape(-1)), int(label)) for image, label in zip(images, labels)}
    web = {expected_image(s)[0] for s in (sessions[0], sessions[1], sessions[2], sessions[5])}  # G1, G2: ambiguous
    voice_images = {expected_image([p])[0] for p in voice}
    assert found == {(image, 1) for image in web} | {(image, 0) for image in voice_images}
    assert len(images) == len(found)  # no duplicate kept
    rows = {row["class"]: row for row in csv.DictReader(open(out / "t_statistics.csv"))}
    web_row, voice_row = rows["web"], rows["voice"]
    assert (web_row["files"], web_row["sessions"], web_row["kept"], web_row["dns"]) == ("2", "10", "4", "1")
    assert (web_row["duplicate"], web_row["ambiguous"], web_row["truncated"], web_row["padded"]) == ("3", "2", "1", "3")
    assert (voice_row["files"], voice_row["kept"], voice_row["duplicate"], voice_row["ambiguous"]) == \
        ("2", "5", "1", "1")
    assert float(voice_row["median_original_length"]) == 20 + 20 + 160  # UDP padded to TCP's header
    assert rows["total"]["kept"] == "9"
    assert "voice" in result.stdout and "python B01_NAS.py images_path=" in result.stdout
    assert not [name for name in os.listdir(out) if name.endswith(".partial")]
    # the same files whatever the workers; refused without overwrite, replaced with it
    run_b00(tmp_path, f"input_dirs=['{root}']", "output_name=t", "n_workers=1", expect_ok=False)
    run_b00(tmp_path, f"input_dirs=['{root}']", "output_name=t", "n_workers=1", "overwrite=True")
    assert (data_lib.read_idx3(str(out / "t_sessions.idx3")) == images).all()


def test_port_labels_a_cap_per_class_and_any_length(tmp_path):
    root, _, _ = class_folders(tmp_path)
    run_b00(tmp_path, f"input_dirs=['{root}']", "output_name=p", "label_by=port",
            "label_mapping={80: 'http', 7078: 'rtp'}", "max_per_class=2", "length=100")
    out = tmp_path / "out"
    assert json.loads((out / "p_labels.json").read_text()) == {"http": 0, "rtp": 1}
    images = data_lib.read_idx3(str(out / "p_sessions.idx3"))
    labels = data_lib.read_idx1(str(out / "p_labels.idx1"))
    assert images.shape == (4, 1, 100)  # http: A and C (b.pcap's copies are duplicates); rtp: 2 of its 5
    assert np.bincount(labels).tolist() == [2, 2]
    rows = {row["class"]: row for row in csv.DictReader(open(out / "p_statistics.csv"))}
    assert (rows["http"]["duplicate"], rows["rtp"]["kept"], rows["rtp"]["over_cap"]) == ("2", "2", "3")
    report = (out / "p_report.txt").read_text()
    # B twice, B2, G1 twice, G2: their ports (6000, 5000, 2222, 4444) are not in the mapping
    assert "6 sessions have no port in label_mapping" in report and "6000 (2)" in report


def test_bad_input_is_named_and_the_other_files_are_converted(tmp_path):
    root, _, _ = class_folders(tmp_path)
    web = root / "web"
    good = (web / "a.pcap").read_bytes()
    (web / "truncated.pcap").write_bytes(good[:-30])
    (web / "notes.pcap").write_text("not a capture\n")
    (web / "empty.pcapng").write_bytes(b"")
    write_pcap(str(web / "wifi.pcap"), [(0.0, bytes(80))], linktype=105)  # 802.11: not read
    (root / "empty_class").mkdir()
    result = run_b00(tmp_path, f"input_dirs=['{root}', '{root / 'empty_class'}']", "output_name=b")
    for expected in ("truncated.pcap: the last packet is cut short", "notes.pcap: not a pcap or pcapng capture",
                     "empty.pcapng: not a pcap or pcapng capture (it starts with nothing",
                     "wifi.pcap: link type 105 is not read", "empty_class holds no .pcap"):
        assert expected in result.stderr, expected
    rows = {row["class"]: row for row in csv.DictReader(open(tmp_path / "out" / "b_statistics.csv"))}
    assert rows["web"]["files"] == "3" and rows["voice"]["kept"] == "5"  # a.pcap, b.pcap and the truncated one
    # refused before any capture is read: nothing written
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("")
    for overrides, message in [([f"input_dirs=['{tmp_path / 'nowhere'}']"], "nowhere does not exist"),
                               ([f"input_dirs=['{root}']", "label_by=keywords"], "label_by='keywords' needs"),
                               ([f"input_dirs=['{root}']", "ports=hide"], "ports='hide'"),
                               ([f"input_dirs=['{root}']", "lenght=100"], "unknown parameter 'lenght'")]:
        failed = run_b00(tmp_path, *overrides, "output_name=z", expect_ok=False)
        assert message in failed.stderr
    failed = subprocess.run([sys.executable, os.path.join(PROJECT_DIR, "B00_pcap_to_idx.py"),
                             f"input_dirs=['{root}']", f"output_dir={not_a_folder / 'sub'}"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0 and f"output_dir={not_a_folder / 'sub'}: cannot write there" in failed.stderr
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith("z")]


def test_captures_without_a_payload_packet_write_nothing(tmp_path):
    (tmp_path / "captures" / "syn").mkdir(parents=True)
    write_pcap(str(tmp_path / "captures" / "syn" / "scan.pcap"),
               [(i * 0.1, ethernet(ip_packet(CLIENT, SERVER, "tcp", 40000 + i, 22, flags="S"))) for i in range(3)])
    failed = run_b00(tmp_path, f"input_dirs=['{tmp_path / 'captures'}']", expect_ok=False)
    assert "0 classes kept" in failed.stderr and "nothing was written" in failed.stderr
    assert not os.listdir(tmp_path / "out")


def test_a_damaged_record_keeps_the_packets_before_it(tmp_path):
    frames, _ = mixed_capture()
    path = tmp_path / "damaged.pcap"
    write_pcap(str(path), frames)
    data = bytearray(path.read_bytes())
    data[24 + 16 + len(frames[0][1]) + 8:24 + 16 + len(frames[0][1]) + 12] = (10 ** 9).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    reader = CaptureReader(str(path))
    assert len(list(reader.packets())) == 1
    assert "claims 1000000000 bytes" in reader.damage
    with pytest.raises(CaptureError, match="not a pcap"):
        list(CaptureReader(__file__).packets())


def test_a_converted_capture_is_searched_by_b01(tmp_path):
    """End to end: captures -> B00 -> IDX -> a tiny B01_NAS.py search that trains and deploys networks."""
    root = tmp_path / "captures"
    frames = {"bulk": [], "chat": []}
    for i in range(40):  # 40 sessions per class, told apart by their payload sizes
        for name, size in (("bulk", 700), ("chat", 60)):
            source = f"10.{i}.0.1"
            packets = [ip_packet(source, "10.200.0.1", "tcp", 30000 + i, 9000, payload(size, 1000 * i + k), "PA")
                       for k in range(3)]
            frames[name] += [(i * 10 + k * 0.01, ethernet(packet)) for k, packet in enumerate(packets)]
    for name, class_frames in frames.items():
        (root / name).mkdir(parents=True)
        write_pcap(str(root / name / f"{name}.pcap"), class_frames)
    run_b00(tmp_path, f"input_dirs=['{root}']", "output_name=e2e")
    out = tmp_path / "out"
    search = subprocess.run(
        [sys.executable, os.path.join(PROJECT_DIR, "B01_NAS.py"), f"images_path={out / 'e2e_sessions.idx3'}",
         f"labels_path={out / 'e2e_labels.idx1'}", f"logs_dir={tmp_path / 'logs'}", "n_generations=0",
         "epochs=1", "num_folds=2", "num_selected_folds=1", "n_workers=1", "test_size=0.25", "population_size=2",
         "final_epochs=1"],
        capture_output=True, text=True, timeout=600)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "Data: 60 training / 20 test sessions (test_size=0.25) of length 784, 2 classes" in search.stdout
    assert "TFLite measured" in search.stdout


# ----- bad input found by an adversarial run: each gives a one-line error or a correct result -----

def two_classes(root, names=("alpha", "beta"), sessions=12):
    """A class folder per name, each with one capture of `sessions` TCP sessions of its own payload size."""
    for index, name in enumerate(names):
        folder = os.path.join(str(root), name) if isinstance(name, str) else os.path.join(os.fsencode(str(root)), name)
        os.makedirs(folder)
        frames = [(i * 1.0, ethernet(ip_packet(f"10.{index}.0.{i + 1}", SERVER, "tcp", 30000 + i, 9000,
                                               payload(100 + 200 * index, 100 * index + i), "PA")))
                  for i in range(sessions)]
        write_pcap(os.path.join(folder, b"c.pcap" if isinstance(folder, bytes) else "c.pcap"), frames)


def test_links_that_lead_nowhere_and_a_list_of_numbers_are_named(tmp_path):
    root = tmp_path / "captures"
    two_classes(root)
    os.symlink(str(root / "alpha" / "gone.pcap"), str(root / "alpha" / "dangling.pcap"))
    os.symlink(str(root / "beta" / "loop.pcap"), str(root / "beta" / "loop.pcap"))
    result = run_b00(tmp_path, f"input_dirs=['{root}']")
    assert "dangling.pcap: skipped, a link that leads to no file" in result.stderr
    assert "loop.pcap: skipped, a link that leads to no file" in result.stderr
    assert len(data_lib.read_idx1(str(tmp_path / "out" / "sessions_labels.idx1"))) == 24
    failed = run_b00(tmp_path, "input_dirs=[5]", "output_name=other", expect_ok=False)
    assert "input_dirs=[5]: must be a list of folder names (text)" in failed.stderr


def test_class_names_that_are_not_utf8_or_need_quoting_are_written(tmp_path):
    root = tmp_path / "captures"
    two_classes(root, names=(b"caf\xe9", 'Mail, Chat "x"'))
    run_b00(tmp_path, f"input_dirs=['{root}']")
    classes = json.loads((tmp_path / "out" / "sessions_labels.json").read_text())
    assert classes == {'Mail, Chat "x"': 0, "caf\\xe9": 1}
    with open(tmp_path / "out" / "sessions_statistics.csv", newline="") as statistics_file:
        rows = list(csv.DictReader(statistics_file))
    assert [row["class"] for row in rows] == ['Mail, Chat "x"', "caf\\xe9", "total"]
    assert [row["kept"] for row in rows] == ["12", "12", "24"]


def test_a_pcapng_block_whose_lengths_disagree_or_that_is_too_short_is_damage(tmp_path):
    frames, _ = mixed_capture()
    path = tmp_path / "c.pcapng"
    write_pcapng(str(path), frames)
    data = bytearray(path.read_bytes())
    blocks, offset = [], 0
    while offset < len(data):
        blocks.append(offset)
        offset += struct.unpack_from("<I", data, offset + 4)[0]
    third_packet = blocks[4]  # section header, interface, then packets
    changed = bytearray(data)
    length = struct.unpack_from("<I", changed, third_packet + 4)[0]
    struct.pack_into("<I", changed, third_packet + 4, length + 8)  # plausible: a multiple of 4, within the file
    path.write_bytes(bytes(changed))
    reader = CaptureReader(str(path))
    assert len(list(reader.packets())) == 2
    assert f"the block at byte {third_packet} claims {length + 8} bytes at its start and" in reader.damage
    short_simple_packet_block = struct.pack("<III", 3, 12, 12)
    path.write_bytes(bytes(data[:third_packet]) + short_simple_packet_block + bytes(data[third_packet:]))
    reader = CaptureReader(str(path))
    assert len(list(reader.packets())) == 2
    assert "is 12 bytes, shorter than its fixed fields (16)" in reader.damage


def test_folders_that_cannot_be_read_are_named(tmp_path, monkeypatch):
    from hwnas.captures import capture
    root = tmp_path / "captures"
    two_classes(root, names=("alpha", "beta", "gamma"))
    walk_listing = os.scandir

    def refused(path="."):
        if os.fsdecode(path) in (str(root / "gamma"), str(tmp_path / "locked")):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return walk_listing(path)

    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(os, "scandir", refused)  # running as root, no permission bit would stop a read
    found, notes = capture.find_captures([str(root), str(tmp_path / "locked")])
    assert [os.path.basename(os.path.dirname(path)) for path in found[str(root)]] == ["alpha", "beta"]
    assert notes == [f"{root / 'gamma'}: cannot be read (Permission denied); the captures in it, if any, are not "
                     f"converted", f"{tmp_path / 'locked'}: cannot be read (Permission denied); the captures in it, "
                                   f"if any, are not converted"]


def test_ctrl_c_while_the_dataset_is_made_or_written_leaves_no_file(tmp_path, monkeypatch):
    import runpy
    from hwnas.captures import dataset
    root = tmp_path / "captures"
    two_classes(root)
    for where in ("build_dataset", "replace"):
        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt
        with monkeypatch.context() as patch:
            if where == "build_dataset":
                patch.setattr(dataset, "build_dataset", interrupt)
            else:
                patch.setattr(dataset.os, "replace", interrupt)
            patch.setattr(sys, "argv", ["B00_pcap_to_idx.py", f"input_dirs=['{root}']", f"output_dir={tmp_path / 'out'}",
                                        "n_workers=1"])
            with pytest.raises(SystemExit, match="Interrupted: no output file was written or left half-written"):
                runpy.run_path(os.path.join(PROJECT_DIR, "B00_pcap_to_idx.py"), run_name="__main__")
        assert os.listdir(tmp_path / "out") == []


def test_a_class_in_trouble_is_warned_about_and_one_class_is_refused(tmp_path):
    root = tmp_path / "captures"
    two_classes(root, sessions=30)
    (root / "tinba").mkdir()
    dns = [(i * 1.0, ethernet(ip_packet(f"10.9.0.{i + 1}", SERVER, "udp", 30000 + i, 53, payload(40, 900 + i))))
           for i in range(20)]
    web = [(30.0 + i, ethernet(ip_packet(f"10.8.0.{i + 1}", SERVER, "tcp", 31000 + i, 80, payload(70, 950 + i), "PA")))
           for i in range(4)]
    write_pcap(str(root / "tinba" / "c.pcap"), dns + web)
    result = run_b00(tmp_path, f"input_dirs=['{root}']")
    warning = "class tinba: 20 of its 24 sessions were dropped as DNS sessions (drop_dns), more than half; 4 kept"
    small = "class tinba: 4 sessions kept, fewer than 10 or than 1% of the largest class's (alpha, 30)"
    report = (tmp_path / "out" / "sessions_report.txt").read_text()
    for text in (warning, small):
        assert text in result.stdout and text in report and f"Warning: {text}" in result.stderr
    only_one = tmp_path / "one"
    two_classes(only_one, names=("alpha",))
    failed = run_b00(tmp_path, f"input_dirs=['{only_one}']", "output_name=one", expect_ok=False)
    assert "1 class kept" in failed.stderr and "nothing was written" in failed.stderr
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith("one")]


def arp_frames(count):
    """Ethernet frames carrying ARP requests (not IP): what a capture of a quiet host may hold alone."""
    return [(i * 1.0, b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x07" + struct.pack(">H", 0x0806)
             + struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02\x00\x00\x00\x00\x07", bytes([10, 0, 0, 7]),
                           bytes(6), bytes([10, 0, 0, i + 1])) + bytes(18)) for i in range(count)]


@pytest.mark.parametrize("recipe", ["origin", "USTC-TK2016"])
def test_a_class_of_non_ip_frames_only_is_named_not_dropped_silently(tmp_path, recipe):
    root = tmp_path / "captures"
    two_classes(root, sessions=30)
    (root / "quiet").mkdir()
    write_pcap(str(root / "quiet" / "arp.pcap"), arp_frames(12))
    result = run_b00(tmp_path, f"input_dirs=['{root}']", f"recipe={recipe}", "output_name=arp")
    note = ("class quiet: its 1 file(s) hold no TCP or UDP session over IP (12 frames, 12 of them not IP: ARP or "
            "other link-layer frames), so it is left out and has no label")
    report = (tmp_path / "out" / "arp_report.txt").read_text()
    assert note in result.stdout and note in report
    assert "Warnings: none" not in report and "class quiet: 0 sessions kept" in report
    assert json.loads((tmp_path / "out" / "arp_labels.json").read_text()) == {"alpha": 0, "beta": 1}
    # every class of non-IP frames only: refused, and the notes say why
    only_arp = tmp_path / "only_arp"
    for name in ("one", "two"):
        (only_arp / name).mkdir(parents=True)
        write_pcap(str(only_arp / name / "arp.pcap"), arp_frames(3))
    refused = run_b00(tmp_path, f"input_dirs=['{only_arp}']", f"recipe={recipe}", "output_name=none", expect_ok=False)
    assert "0 classes kept" in refused.stderr and "class one: its 1 file(s) hold no TCP or UDP session" in refused.stderr
