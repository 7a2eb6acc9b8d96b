"""Which local addresses a server listens on, read from /proc/net/tcp (Linux)."""

import socket
import struct
from pathlib import Path


def listening_addresses(port):
    """Return the local IPv4 addresses in LISTEN state on `port`, read from /proc/net/tcp."""
    addresses = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            addresses.append(socket.inet_ntoa(struct.pack("<I", int(host_hex, 16))))
    return addresses
