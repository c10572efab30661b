"""Captures with known sessions, built packet by packet with dpkt (which computes
lengths and checksums as a real stack would) and written by dpkt's writers:
an independent reference for the converter's parser."""
import socket
import struct

import dpkt

TCP_FLAGS = {"S": dpkt.tcp.TH_SYN, "A": dpkt.tcp.TH_ACK, "F": dpkt.tcp.TH_FIN, "R": dpkt.tcp.TH_RST,
             "P": dpkt.tcp.TH_PUSH}


def ip_packet(source, destination, protocol, source_port, destination_port, payload=b"", flags="", ttl=64,
              ident=1234):
    """The bytes of one IPv4 or IPv6 packet (by the address' form) carrying TCP or UDP."""
    if protocol == "tcp":
        transport = dpkt.tcp.TCP(sport=source_port, dport=destination_port, seq=1000, ack=2000, win=512,
                                 flags=sum(TCP_FLAGS[flag] for flag in flags), data=payload)
        number = 6
    else:
        transport = dpkt.udp.UDP(sport=source_port, dport=destination_port, data=payload)
        transport.ulen = 8 + len(payload)
        number = 17
    if ":" in source:
        packet = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, source),
                              dst=socket.inet_pton(socket.AF_INET6, destination), nxt=number, hlim=ttl,
                              flow=0x12345, data=transport)
        packet.plen = len(bytes(transport))
    else:
        packet = dpkt.ip.IP(src=socket.inet_aton(source), dst=socket.inet_aton(destination), p=number, ttl=ttl,
                            id=ident, data=transport)
        packet.len = 20 + len(bytes(transport))
    return bytes(packet)


def ethernet(ip_bytes, vlan_ids=()):
    """An Ethernet frame around an IP packet, with 802.1Q tags for vlan_ids."""
    ethertype = 0x86DD if ip_bytes[0] >> 4 == 6 else 0x0800
    tags = b"".join(struct.pack(">HH", 0x8100, vlan_id) for vlan_id in vlan_ids)
    frame = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + tags + struct.pack(">H", ethertype) + ip_bytes
    return frame + bytes(max(0, 60 - len(frame)))  # Ethernet's minimum frame: padding after the IP packet


def linux_cooked(ip_bytes):
    """A Linux cooked capture (SLL) header around an IP packet."""
    ethertype = 0x86DD if ip_bytes[0] >> 4 == 6 else 0x0800
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", ethertype) + ip_bytes


def write_pcap(path, frames, linktype=1, nano=False):
    """frames: [(timestamp_s, frame bytes)]."""
    with open(path, "wb") as file:
        writer = dpkt.pcap.Writer(file, snaplen=65535, linktype=linktype, nano=nano)
        for timestamp, frame in frames:
            writer.writepkt(frame, ts=timestamp)


def write_pcapng(path, frames, linktype=1):
    with open(path, "wb") as file:
        writer = dpkt.pcapng.Writer(file, snaplen=65535, linktype=linktype)
        for timestamp, frame in frames:
            writer.writepkt(frame, ts=timestamp)


def anonymised(ip_bytes, ip_addresses="zero", ports="zero", zero_header_fields=True, pad_udp_header=True):
    """The reference rewriting of one IP packet, written out field by field."""
    packet = bytearray(ip_bytes)
    version = packet[0] >> 4
    if version == 4:
        transport, protocol = (packet[0] & 0x0F) * 4, packet[9]
    else:  # past hop-by-hop (0), routing (43), destination options (60) and fragment (44) headers
        transport, protocol = 40, packet[6]
        while protocol in (0, 43, 60, 44):
            protocol, transport = packet[transport], transport + (8 if protocol == 44 else
                                                                  (packet[transport + 1] + 1) * 8)
    is_udp = protocol == 17
    if ports == "zero":
        packet[transport:transport + 4] = bytes(4)
    if zero_header_fields:
        checksum = transport + (6 if is_udp else 16)
        packet[checksum:checksum + 2] = bytes(2)
        if version == 4:
            packet[4:6], packet[8], packet[10:12] = bytes(2), 0, bytes(2)
        else:
            packet[1], packet[2:4], packet[7] = packet[1] & 0xF0, bytes(2), 0
    if is_udp and pad_udp_header:
        packet[transport + 8:transport + 8] = bytes(12)
    addresses = slice(12, 20) if version == 4 else slice(8, 40)
    if ip_addresses == "zero":
        packet[addresses] = bytes(addresses.stop - addresses.start)
    elif ip_addresses == "remove":
        del packet[addresses]
    return bytes(packet)


def with_ipv4_options(ip_bytes, options=b"\x01\x01\x01\x00"):
    """An IPv4 packet with options (NOPs and an end of list) inserted after its 20-byte header."""
    packet = bytearray(ip_bytes)
    packet[0] = 0x40 | (20 + len(options)) // 4
    packet[2:4] = struct.pack(">H", len(packet) + len(options))
    return bytes(packet[:20] + options + packet[20:])


def with_ipv6_headers(ip_bytes, headers):
    """An IPv6 packet with extension headers (a list of (type, 8-byte body without its next-header byte))
    inserted after its 40-byte header."""
    packet = bytearray(ip_bytes)
    chain = [packet[6]]
    inserted = b""
    for header_type, body in reversed(headers):
        inserted = bytes([chain[-1]]) + body + inserted
        chain.append(header_type)
    packet[6] = chain[-1]
    packet[4:6] = struct.pack(">H", len(packet) - 40 + len(inserted))
    return bytes(packet[:40] + inserted + packet[40:])
