"""From packets to sessions: the link layer dropped, hosts anonymised, packets
grouped by bidirectional 5-tuple (or unidirectional flow), each session cut or
zero-padded to a fixed number of bytes.

A session is what the ISCX VPN-nonVPN / USTC-TFC papers feed their classifiers:
its packets' bytes from the IP header on, in capture order, packets without a
transport payload (a bare SYN, ACK, FIN or RST) left out. A session ends at a
new TCP connection on its tuple (a SYN after a FIN or RST) and after an idle
gap (udp_timeout_s, tcp_timeout_s); an ended session is emitted and forgotten,
so memory holds the open sessions, each at most `length` bytes, not the file.
"""
import collections
import concurrent.futures
import hashlib
import multiprocessing
import os
import signal
import threading
from typing import NamedTuple

from hwnas.captures.capture import (
    HEADER_OUTCOMES,
    LINKTYPE_NAMES,
    TCP,
    UDP,
    CaptureError,
    CaptureReader,
    block_headers,
    file_size,
)
from hwnas.common.numbers import is_integer, is_number

IP_ADDRESS_CHOICES = ("zero", "remove", "hash", "keep")
PORT_CHOICES = ("zero", "keep")
SPLIT_CHOICES = ("session", "flow")
DNS_PORTS = (53, 5353, 5355)  # DNS, multicast DNS, LLMNR: name lookups, not the application's traffic
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
TCP_FIN_OR_RST = TCP_FIN | TCP_RST  # the end of a connection: a SYN after it starts a new session
UDP_PAD = bytes(12)  # a UDP header (8 bytes) padded to a TCP header without options (20)
SWEEP_EVERY_PACKETS = 1 << 16  # how often the sessions idle past their timeout are emitted and forgotten


class SessionSettings(NamedTuple):
    """How sessions are cut and anonymised (B00_pcap_to_idx.py's parameters of the same names;
    length, the bytes per session, has no default here: B00's parameter is the one default)."""
    length: int
    split: str = "session"
    udp_timeout_s: float = 10.0
    tcp_timeout_s: float = 120.0
    ip_addresses: str = "zero"
    hash_salt: bytes = b""
    ports: str = "zero"
    zero_header_fields: bool = True
    pad_udp_header: bool = True
    drop_dns: bool = True


class SessionRecord(NamedTuple):
    """One session: its `length` bytes (b"" when dropped), the length its payload
    packets had uncut (after anonymisation), their number, all its packets, its
    ports (the server's: the destination of its first SYN, else of its first
    packet), and why it is dropped: None, "empty" (no payload packet) or "dns"."""
    image: bytes
    original_length: int
    n_payload_packets: int
    n_packets: int
    server_port: int
    client_port: int
    dropped: object


class FileSessions(NamedTuple):
    """What one capture file gave: its sessions in the order they started,
    packet and session counts (keys of FILE_COUNTS), and why reading stopped
    early, if it did (else None)."""
    path: str
    sessions: list
    counts: dict
    damage: object


FILE_COUNTS = ("packets", "payload_packets", "no_payload_packets", "not_ip_packets", "other_protocol_packets",
               "fragment_packets", "malformed_packets", "unknown_link_packets",
               "sessions", "empty_sessions", "dns_sessions")


def server_and_client_ports(key, flags):
    """(server port, client port) of the session a packet's 5-tuple key starts: the destination
    is the server's, unless the first packet seen is the server's answer (SYN+ACK)."""
    source_port, destination_port = (key[-4] << 8) | key[-3], (key[-2] << 8) | key[-1]
    if flags & TCP_SYN and flags & TCP_ACK:  # the server's answer came first
        return source_port, destination_port
    return destination_port, source_port


def reversed_key(key, version):
    """The 5-tuple key of the other direction (addresses and ports swapped): the protocol byte, the
    two addresses (4 or 16 bytes each by IP version), the rest, then the two 2-byte ports."""
    half = 4 if version == 4 else 16  # bytes per address
    return key[:1] + key[1 + half:1 + 2 * half] + key[1:1 + half] + key[1 + 2 * half:-4] + key[-2:] + key[-4:-2]


class _Session:
    __slots__ = ("order", "table", "keys", "chunks", "n_bytes", "ip_bytes", "growth", "n_payload_packets",
                 "n_bare_packets", "last_seen_s",
                 "timeout_s", "closed", "server_port", "client_port", "is_dns")


def sessions_of_file(path, settings, report_progress=None):
    """Reads one capture file and returns its FileSessions.

    report_progress(bytes) is called after each block read with the bytes read
    since its last call. A file that is not a capture raises CaptureError; a
    damaged or truncated one gives the sessions before the damage, with .damage
    saying what and where.
    """
    reader = CaptureReader(path)
    table = _SessionTable(settings)
    unknown_links = collections.Counter()
    reported_bytes = swept_at = 0
    for block in reader.blocks():
        headers = block_headers(block)
        table.counts["packets"] += len(block.starts)
        for name, n in zip(HEADER_OUTCOMES[1:], headers.outcome_counts[1:]):
            table.counts[name] += n
        unknown_links.update(headers.unknown_linktypes)
        table.read_block(block.buffer, headers)
        if table.counts["packets"] - swept_at >= SWEEP_EVERY_PACKETS:  # what has been idle too long is over
            swept_at = table.counts["packets"]
            table.finish_idle(float(block.timestamps[-1]))
        if report_progress is not None:
            report_progress(reader.bytes_read - reported_bytes)
            reported_bytes = reader.bytes_read
    table.finish_idle(None)  # what is still open at the end of the file
    if report_progress is not None:
        report_progress(reader.bytes_read - reported_bytes)
    counts, damage = table.counts, reader.damage
    if unknown_links:
        linktypes = ", ".join(map(str, sorted(unknown_links)))
        if counts["unknown_link_packets"] == counts["packets"]:
            raise CaptureError(f"{path}: link type {linktypes} is not read (the link types read: "
                               f"{_linktype_list()})")
        damage = ((damage + "; ") if damage else "") + (
            f"{counts['unknown_link_packets']} packets of link type {linktypes} skipped (the link types read: "
            f"{_linktype_list()})")
    return FileSessions(path, table.records(), counts, damage)


class _SessionTable:
    """The open sessions of one capture, by key (IP version, addresses, ports; under both
    directions' keys in session mode), TCP and UDP apart, and the finished ones."""

    def __init__(self, settings):
        self.settings = settings
        self.counts = dict.fromkeys(FILE_COUNTS, 0)
        self.finished = []  # (order, SessionRecord)
        self.tcp, self.udp = {}, {}
        self.rewrite = _PacketRewriter(settings)
        self.n_started = 0

    def read_block(self, data, headers):
        """Adds the packets of a block (data: its bytes; headers: hwnas.captures.capture.block_headers)
        to their sessions; finishes a session idle too long or followed by a new TCP connection."""
        tcp_table, udp_table, length, rewrite = self.tcp, self.udp, self.settings.length, self.rewrite
        bidirectional = self.settings.split == "session"
        for key, timestamp_s, flags, is_tcp, ip_size, has_payload, o, t, end, version in zip(*headers.columns[:10]):
            table = tcp_table if is_tcp else udp_table
            session = table.get(key)
            if session is not None and (timestamp_s - session.last_seen_s > session.timeout_s or (
                    session.closed and flags & TCP_SYN and (not flags & TCP_ACK or not bidirectional))):
                self.finish(session)  # idle too long, or a new TCP connection on the same tuple
                session = None
            if session is None:
                session = self.open(table, key, flags, is_tcp, version)
            session.last_seen_s = timestamp_s
            if flags & TCP_FIN_OR_RST:
                session.closed = True
            if not has_payload:
                session.n_bare_packets += 1
                continue
            session.n_payload_packets += 1
            session.ip_bytes += ip_size
            if session.n_bytes < length:
                packet = rewrite(data, o, t, end, version, TCP if is_tcp else UDP)
                session.chunks.append(packet)
                session.n_bytes += len(packet)

    def open(self, table, key, flags, is_tcp, version):
        """A new session of the packet's key, entered in table under its keys."""
        settings = self.settings
        session = _Session()
        session.order, self.n_started = self.n_started, self.n_started + 1
        session.chunks, session.n_bytes, session.ip_bytes = [], 0, 0
        session.n_payload_packets = session.n_bare_packets = 0
        session.growth = self.rewrite.growth[version, TCP if is_tcp else UDP]
        session.timeout_s = settings.tcp_timeout_s if is_tcp else settings.udp_timeout_s
        session.closed = False
        session.server_port, session.client_port = server_and_client_ports(key, flags)
        session.is_dns = settings.drop_dns and (session.server_port in DNS_PORTS or session.client_port in DNS_PORTS)
        reverse = reversed_key(key, version)
        session.table = table
        session.keys = (key, reverse) if settings.split == "session" and reverse != key else (key,)
        for each_key in session.keys:
            table[each_key] = session
        self.counts["sessions"] += 1
        return session

    def finish(self, session):
        """Takes the session out of its table and keeps its record."""
        counts, length = self.counts, self.settings.length
        for key in session.keys:
            session.table.pop(key, None)
        counts["payload_packets"] += session.n_payload_packets
        counts["no_payload_packets"] += session.n_bare_packets
        if session.is_dns or not session.n_payload_packets:
            dropped = "dns" if session.is_dns else "empty"
            counts[dropped + "_sessions"] += 1
            image = b""
        else:
            dropped = None
            image = b"".join(session.chunks)[:length]
            image += bytes(length - len(image))
        # the length uncut: its IP packets as they were, changed as the rewriting changes each
        original_length = session.ip_bytes + session.n_payload_packets * session.growth
        self.finished.append((session.order, SessionRecord(
            image, original_length, session.n_payload_packets, session.n_payload_packets + session.n_bare_packets,
            session.server_port, session.client_port, dropped)))

    def finish_idle(self, now):
        """Finishes the sessions idle past their timeout at time now (None: every open session)."""
        for table in (self.tcp, self.udp):
            for session in {id(s): s for s in table.values()
                            if now is None or now - s.last_seen_s > s.timeout_s}.values():
                self.finish(session)

    def records(self):
        """The finished sessions' records, in the order they started."""
        return [record for _, record in sorted(self.finished, key=lambda item: item[0])]


def _linktype_list():
    return ", ".join(f"{number} ({name})" for number, name in sorted(LINKTYPE_NAMES.items()))


class _PacketRewriter:
    """Anonymises one packet's bytes from the IP header on: called as
    rewrite(data, ip_start, transport_start, end, version, protocol)."""

    def __init__(self, settings):
        self.settings = settings
        self.hashed = {}  # address -> its salted hash, the same within one conversion
        removed = {4: -8, 6: -32} if settings.ip_addresses == "remove" else {4: 0, 6: 0}
        padding = len(UDP_PAD) if settings.pad_udp_header else 0
        # bytes a packet gains (or loses) in the rewriting, for its session's original length
        self.growth = {(version, protocol): removed[version] + (padding if protocol == UDP else 0)
                       for version in (4, 6) for protocol in (TCP, UDP)}

    def __call__(self, data, o, t, end, version, protocol):
        settings = self.settings
        packet = bytearray(data[o:end])
        t -= o
        if settings.ports == "zero":
            packet[t:t + 4] = b"\0\0\0\0"
        if settings.zero_header_fields:
            if protocol == TCP:
                packet[t + 16:t + 18] = b"\0\0"  # checksum: computed over the addresses
            else:
                packet[t + 6:t + 8] = b"\0\0"
            if version == 4:
                packet[4:6] = b"\0\0"  # identification: a per-host counter on many systems
                packet[8] = 0  # TTL: how many hops away the host is
                packet[10:12] = b"\0\0"  # header checksum: computed over the addresses
            else:
                packet[1] &= 0xF0  # flow label (with the next two bytes): chosen per flow by the host
                packet[2:4] = b"\0\0"
                packet[7] = 0  # hop limit
        if protocol == UDP and settings.pad_udp_header:
            packet[t + 8:t + 8] = UDP_PAD
        first, last = (12, 20) if version == 4 else (8, 40)
        if settings.ip_addresses == "zero":
            packet[first:last] = bytes(last - first)
        elif settings.ip_addresses == "remove":
            del packet[first:last]
        elif settings.ip_addresses == "hash":
            half = (last - first) // 2
            packet[first:last] = self._hash(bytes(packet[first:first + half])) + self._hash(
                bytes(packet[first + half:last]))
        return bytes(packet)

    def _hash(self, address):
        hashed = self.hashed.get(address)
        if hashed is None:
            hashed = self.hashed[address] = hashlib.blake2b(address, key=self.settings.hash_salt[:64],
                                                            digest_size=len(address)).digest()
        return hashed


def sessions_of_files(paths, settings, n_workers=1, on_progress=None, on_file=None, read_file=None):
    """read_file(path, settings, report_progress) for every path, n_workers files at a time
    (read_file: sessions_of_file, the origin recipe's, unless another recipe's is given).

    Returns {path: FileSessions or CaptureError/OSError}: a file that cannot be
    read gives its error, and the others are still converted. The result for a
    file does not depend on n_workers. on_progress(bytes) reports bytes read as
    they are read; on_file(path, result) is called as each file ends. Largest
    files go first, so that one large file does not end the run alone.
    """
    results = {}
    read_file = read_file or sessions_of_file
    if n_workers <= 1 or len(paths) <= 1:
        for path in paths:
            results[path] = _file_or_error(read_file, path, settings, on_progress)
            if on_file is not None:
                on_file(path, results[path])
        return results
    # Workers are forks: they only parse bytes (no TensorFlow is imported on this side of the
    # toolkit) and start in milliseconds, where spawn would run the calling script again in each.
    context = multiprocessing.get_context("fork")
    progress_queue = context.Queue()
    reporter = threading.Thread(target=_relay_progress, args=(progress_queue, on_progress), daemon=True)
    reporter.start()
    by_size = sorted(paths, key=lambda path: -file_size(path))
    try:
        with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context, initializer=_start_worker,
                                                    initargs=(progress_queue,)) as pool:
            futures = {pool.submit(_file_or_error, read_file, path, settings, _report_to_queue): path
                       for path in by_size}
            try:
                for future in concurrent.futures.as_completed(futures):
                    path = futures[future]
                    results[path] = future.result()
                    if on_file is not None:
                        on_file(path, results[path])
            except BaseException:  # Ctrl-C, or a worker that died: no file is read on for nothing
                for worker in multiprocessing.active_children():
                    worker.terminate()
                raise
    finally:
        progress_queue.put(None)
        reporter.join()
    return results


def _file_or_error(read_file, path, settings, report_progress):
    try:
        return read_file(path, settings, report_progress)
    except CaptureError as error:
        return error
    except OSError as error:  # unreadable: permissions, a vanished file, an I/O error
        return CaptureError(f"{path}: cannot be read ({error.strerror or error})")


_progress_queue = None  # in a worker: where it reports the bytes it has read


def _start_worker(progress_queue):
    global _progress_queue
    _progress_queue = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the pool


def _report_to_queue(n_bytes):
    _progress_queue.put(n_bytes)


def _relay_progress(progress_queue, on_progress):
    for n_bytes in iter(progress_queue.get, None):
        if on_progress is not None:
            on_progress(n_bytes)


def session_settings(parameters):
    """SessionSettings from B00_pcap_to_idx.py's parameters (a dict holding its field
    names), checked: raises ValueError naming a parameter whose value is not valid.
    hash_salt "" becomes a random salt of this run (so no two runs hash alike)."""
    choices = {"split": SPLIT_CHOICES, "ip_addresses": IP_ADDRESS_CHOICES, "ports": PORT_CHOICES}
    for name, allowed in choices.items():
        if parameters[name] not in allowed:
            raise ValueError(f"{name}={parameters[name]!r}: must be one of {', '.join(allowed)}")
    length = parameters["length"]
    if not is_integer(length) or not 1 <= length <= 1 << 20:
        raise ValueError(f"length={length!r}: must be a number of bytes from 1 to {1 << 20}")
    for name in ("udp_timeout_s", "tcp_timeout_s"):
        if not is_number(parameters[name]) or not parameters[name] > 0:
            raise ValueError(f"{name}={parameters[name]!r}: must be a number of seconds above 0")
    for name in ("zero_header_fields", "pad_udp_header", "drop_dns"):
        if not isinstance(parameters[name], bool):
            raise ValueError(f"{name}={parameters[name]!r}: must be True or False")
    salt = str(parameters["hash_salt"]).encode() or os.urandom(16)
    fields = {name: parameters[name] for name in SessionSettings._fields if name != "hash_salt"}
    return SessionSettings(**fields, hash_salt=hashlib.sha256(salt).digest())
