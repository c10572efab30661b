"""Benchmark: packets per second of the capture converter against a scapy loop doing the
same session grouping (the original toolkit's approach), side by side in one run.

    python tests/benchmarks/benchmark_pcap.py [--packets 1000000] [--scapy-packets N] [--folder DIR]

Writes a synthetic Ethernet capture of --packets packets: TCP connections (handshake,
requests and answers of 0 to 1,460 bytes both ways, FIN) and UDP exchanges, IPv4 with
some IPv6 and 802.1Q VLAN tags, about 400 sessions open at any time. Then, each in a
fresh process (so that its peak memory is its own):
  1. this toolkit's sessions.sessions_of_file on the whole capture (one core);
  2. the same through sessions_of_files with two workers on the capture cut in two files
     (what B00_pcap_to_idx.py does with n_workers = 2);
  3. scapy's PcapReader loop on the first --scapy-packets packets (200,000 by default:
     scapy's time per packet does not change along the file, and all 1,000,000 would
     take some 8 minutes): IP layer, TCP/UDP ports, bidirectional 5-tuple, payload
     packets' IP bytes joined up to 784 bytes per session.
Prints packets/s, the ratio, and each run's peak resident memory (VmHWM; with two
workers, the largest of the main process and its workers).
"""
import argparse
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time

import benchmark_setup  # noqa: E402  (the project and the tests' helpers on the path)

PROJECT_DIR = benchmark_setup.PROJECT_DIR


def write_synthetic_capture(path, n_packets, seed=0, open_sessions=400):
    """A pcap of n_packets Ethernet frames from interleaved sessions. Returns the number of sessions."""
    rng = random.Random(seed)
    payload_pool = bytes(rng.getrandbits(8) for _ in range(1 << 16))
    ethernet_ipv4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    ethernet_ipv6 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x86\xdd"
    vlan_ipv4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x81\x00\x00\x07\x08\x00"
    n_sessions = 0

    def new_session():
        nonlocal n_sessions
        n_sessions += 1
        is_tcp = rng.random() < 0.8
        version = 6 if rng.random() < 0.15 else 4
        if version == 4:
            client = struct.pack(">I", 0x0A000000 + rng.getrandbits(16))
            server = struct.pack(">I", 0x0A640000 + rng.getrandbits(8))
        else:
            client, server = bytes(15) + bytes([rng.getrandbits(8)]), b"\xfd" + bytes(14) + bytes([rng.getrandbits(8)])
        link = ethernet_ipv6 if version == 6 else vlan_ipv4 if rng.random() < 0.1 else ethernet_ipv4
        ports = (rng.randrange(1024, 65535), rng.choice([80, 443, 22, 25, 3306, 5432, 6379, 8883, 1883, 5060]))
        length = max(2, int(rng.expovariate(1 / 40)))  # packets in the session: a mean of about 40
        steps = (["S", "SA", "A"] + ["data"] * (length - 5) + ["FA", "FA"]) if is_tcp else ["data"] * length
        return {"tcp": is_tcp, "version": version, "addresses": (client, server), "link": link, "ports": ports,
                "steps": steps, "position": 0}

    def frame(session, step):
        forward = step in ("S", "A") or (step == "data" and rng.random() < 0.45) or (
            step == "FA" and rng.random() < 0.5)
        source, destination = session["addresses"] if forward else session["addresses"][::-1]
        source_port, destination_port = session["ports"] if forward else session["ports"][::-1]
        size = 0 if step != "data" else rng.choice([0, 0, rng.randrange(1, 200), rng.randrange(200, 1461), 1460])
        start = rng.randrange(0, len(payload_pool) - 1461)
        data = payload_pool[start:start + size]
        if session["tcp"]:
            flags = {"S": 0x02, "SA": 0x12, "A": 0x10, "FA": 0x11, "data": 0x18 if size else 0x10}[step]
            transport = struct.pack(">HHIIBBHHH", source_port, destination_port, 1, 1, 0x50, flags, 512, 0, 0) + data
            protocol = 6
        else:
            size = size or 32
            data = payload_pool[start:start + size]
            transport = struct.pack(">HHHH", source_port, destination_port, 8 + size, 0) + data
            protocol = 17
        if session["version"] == 4:
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 1, 0x4000, 64, protocol, 0,
                             source, destination) + transport
        else:
            ip = struct.pack(">IHBB16s16s", 0x60000000, len(transport), protocol, 64, source, destination) + transport
        return session["link"] + ip

    with open(path, "wb") as file:
        file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        sessions = [new_session() for _ in range(open_sessions)]
        timestamp = 1_700_000_000.0
        for _ in range(n_packets):
            i = rng.randrange(open_sessions)
            session = sessions[i]
            packet = frame(session, session["steps"][session["position"]])
            session["position"] += 1
            if session["position"] == len(session["steps"]):
                sessions[i] = new_session()
            timestamp += rng.expovariate(20_000)
            seconds = int(timestamp)
            file.write(struct.pack("<IIII", seconds, int((timestamp - seconds) * 1e6), len(packet), len(packet)))
            file.write(packet)
    return n_sessions


def split_capture(path, first_path, second_path):
    """The capture cut in two pcap files at its middle packet."""
    with open(path, "rb") as file:
        data = file.read()
    offsets, position = [], 24
    while position < len(data):
        offsets.append(position)
        position += 16 + struct.unpack_from("<I", data, position + 8)[0]
    middle = offsets[len(offsets) // 2]
    for part_path, part in ((first_path, data[24:middle]), (second_path, data[middle:])):
        with open(part_path, "wb") as file:
            file.write(data[:24] + part)


def run_ours(paths, n_workers):
    from hwnas.captures import sessions
    started = time.perf_counter()
    if len(paths) == 1:
        results = {paths[0]: sessions.sessions_of_file(paths[0], sessions.SessionSettings(length=784))}
    else:
        results = sessions.sessions_of_files(paths, sessions.SessionSettings(length=784), n_workers)
    seconds = time.perf_counter() - started
    packets = sum(result.counts["packets"] for result in results.values())
    sessions = sum(record.dropped is None for result in results.values() for record in result.sessions)
    return packets, sessions, seconds


def run_scapy(path, max_packets, length=784):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader
    started = time.perf_counter()
    sessions = {}
    packets = 0
    for packet in PcapReader(path):
        packets += 1
        if packets > max_packets:
            packets -= 1
            break
        ip = packet.getlayer(IP) or packet.getlayer(IPv6)
        if ip is None:
            continue
        transport = ip.getlayer(TCP) or ip.getlayer(UDP)
        if transport is None:
            continue
        ends = sorted([(ip.src, transport.sport), (ip.dst, transport.dport)])
        key = (ip.__class__.__name__, type(transport).__name__, *ends)
        if not len(transport.payload):
            continue
        chunks = sessions.setdefault(key, [])
        if sum(map(len, chunks)) < length:
            chunks.append(bytes(ip))
    images = [(b"".join(chunks) + bytes(length))[:length] for chunks in sessions.values()]
    return packets, len(images), time.perf_counter() - started


def child(kind, paths, max_packets):
    """Runs one measurement in this (fresh) process and prints it as one line of numbers."""
    packets, sessions, seconds = run_scapy(paths[0], max_packets) if kind == "scapy" else run_ours(
        paths, 2 if kind == "ours-2" else 1)
    with open("/proc/self/status") as status:  # VmHWM: this process's peak, not its parent's at the fork
        own_kb = int(next(line for line in status if line.startswith("VmHWM")).split()[1])
    workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(packets, sessions, seconds, max(own_kb, workers_kb) / 1024)


def measure(kind, paths, max_packets=0):
    output = subprocess.run([sys.executable, __file__, "--child", kind, "--max", str(max_packets), *paths],
                            capture_output=True, text=True, check=True).stdout.split()
    packets, sessions, seconds, peak_mb = int(output[0]), int(output[1]), float(output[2]), float(output[3])
    return packets, sessions, seconds, peak_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--scapy-packets", type=int, default=200_000, help="packets scapy reads (0 = all)")
    parser.add_argument("--folder", default=None, help="where the capture is written (default: a temporary folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return child(arguments.child, arguments.paths, arguments.max or float("inf"))

    folder = arguments.folder or tempfile.mkdtemp(prefix="benchmark_pcap_")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "synthetic.pcap")
    started = time.perf_counter()
    n_sessions = write_synthetic_capture(path, arguments.packets)
    halves = [os.path.join(folder, "first_half.pcap"), os.path.join(folder, "second_half.pcap")]
    split_capture(path, *halves)
    size_mb = os.path.getsize(path) / 1e6
    print(f"Synthetic capture: {arguments.packets} packets, {n_sessions} sessions started, {size_mb:.0f} MB "
          f"({time.perf_counter() - started:.0f} s to write), {os.cpu_count()} cores")

    rows = []
    for label, kind, paths in [("this converter, 1 process", "ours", [path]),
                               ("this converter, 2 workers (2 files)", "ours-2", halves),
                               ("scapy PcapReader loop, 1 process", "scapy", [path])]:
        packets, sessions, seconds, peak_mb = measure(kind, paths, arguments.scapy_packets if kind == "scapy" else 0)
        rows.append((label, packets, sessions, seconds, packets / seconds, peak_mb))
        print(f"  {label:<38} {packets:>9} packets {sessions:>7} sessions {seconds:8.1f} s "
              f"{packets / seconds:>10,.0f} packets/s   peak memory {peak_mb:6.0f} MB", flush=True)
    ours, ours_parallel, scapy = rows
    print(f"\nThis converter vs the scapy loop (one process each): {ours[4] / scapy[4]:.1f}x faster "
          f"(target 20x); {ours[4]:,.0f} packets/s per core (target 200,000)")
    print(f"Two workers: {ours_parallel[4]:,.0f} packets/s, {ours_parallel[4] / ours[4]:.2f}x one process "
          f"(includes starting the workers and sending the sessions back)")
    print(f"Peak memory of one process: {ours[5]:.0f} MB for a {size_mb:.0f} MB capture "
          f"(the open sessions and the sessions found, not the file)")


if __name__ == "__main__":
    main()
