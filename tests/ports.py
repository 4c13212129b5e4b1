"""Free TCP ports for the servers that tests start (DDP's store, slurmctld, slurmd)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1, outside the kernel's ephemeral range.

    ``bind(0)`` would pick one inside that range, where it can be handed out again as the source
    port of any outgoing connection before the server binds it: a DDP rank dialling its store
    before rank 0 listens can even be given it and connect to itself. The server then cannot bind.
    Ports come from 20000 up to the range, or from above it where it starts at 20000 or lower.
    """
    low, high = map(int, _EPHEMERAL.read_text().split()) if _EPHEMERAL.exists() else (32768, 60999)
    # Where the range starts at or below _LOWEST, the ports above it are outside it.
    candidates = range(_LOWEST, low) if low > _LOWEST else range(high + 1, 65536)
    ports: list[int] = []
    for port in random.Random().sample(candidates, min(500, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(
        f"fewer than {count} free TCP port(s) at or above {_LOWEST} outside the ephemeral range "
        f"{low}-{high} ({_EPHEMERAL})"
    )
