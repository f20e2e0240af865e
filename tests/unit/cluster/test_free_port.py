"""The ports ``free_port`` picks for a cluster's listeners."""

from __future__ import annotations

from pathlib import Path

from services.cluster.supervisor import free_port


def test_free_port_never_hands_out_a_port_twice_nor_one_outgoing_connections_may_hold() -> None:
    # A cluster picks every listener's port before any binds: a repeat is two listeners on one port.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    # A restarted replica binds its port again: one in the ephemeral range may be some connection's by then.
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert max(ports) < ephemeral
