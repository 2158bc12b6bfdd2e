"""harness/docker.py `free_port`: a port the harness names itself is drawn below the kernel's ephemeral range, where
the engine never picks a published port (`-p 127.0.0.1::PORT`) that could take it before it is bound, and a port
already taken is never given."""

import socket
from pathlib import Path

from harness import docker
from harness.docker import EPHEMERAL_RANGE, PORTS_BELOW_EPHEMERAL, free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable():
    low = int(Path(EPHEMERAL_RANGE).read_text().split()[0])
    ports = {free_port() for _ in range(40)}
    assert all(max(1024, low - PORTS_BELOW_EPHEMERAL) <= port < low for port in ports), (low, sorted(ports))
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_taken_is_not_given(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            spare = probe.getsockname()[1]
        draws = iter([busy, busy, spare])
        monkeypatch.setattr(docker.random, "randrange", lambda *_: next(draws))
        assert free_port() == spare
