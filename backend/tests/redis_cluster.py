"""A real Redis Cluster for tests: three masters and three replicas from Debian's `redis-server`.

Each node runs in a directory of its own on a free loopback port (its cluster bus on another), the
six are joined with `redis-cli --cluster create --cluster-replicas 1`, and `running_redis_cluster`
returns once every node says `cluster_state:ok` and every replica has synced. Whatever a test did
to the nodes (killed, restarted), all of them are stopped at the end. A missing binary stops the run
with one clear line; it never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.servers import free_port

MASTERS = 3
# Short, so a killed master is declared failed and its replica promoted within a few seconds.
NODE_TIMEOUT_MILLISECONDS = 1000
START_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.05


def _executable(name: str) -> str:
    executable = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(executable, os.X_OK):
        pytest.exit(f"{name} not found: install Debian's redis-server package (it brings {name})", returncode=3)
    return executable


@dataclass(frozen=True, slots=True)
class ClusterNodeView:
    """One line of CLUSTER NODES: a node's port, its flags now, and the slots it serves."""

    port: int
    flags: frozenset[str]
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        """A master not suspected nor declared failed."""
        return "master" in self.flags and not self.flags & {"fail", "fail?"}

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _views(nodes: dict[str, dict[str, Any]]) -> list[ClusterNodeView]:
    """CLUSTER NODES as redis-py parses it (by `host:port`) as views."""
    return [
        ClusterNodeView(
            port=int(address.rsplit(":", 1)[1]),
            flags=frozenset(str(node["flags"]).split(",")),
            slots=tuple((int(first), int(last)) for first, last in node["slots"]),
        )
        for address, node in nodes.items()
    ]


class ClusterNodeServer:
    """One `redis-server` in cluster mode that a test can kill and start again (same port, same node id)."""

    def __init__(self, executable: str, directory: Path, port: int, bus_port: int) -> None:
        self.executable = executable
        self.port = port
        # Picked, not derived: the default (port + 10000) may be taken, or past 65535.
        self.bus_port = bus_port
        self.directory = directory
        self.process: Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def client(self) -> Redis:
        """A plain client on this node alone (close it after use)."""
        return Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=1.0)

    async def start(self) -> None:
        """Start (or restart: nodes.conf keeps its identity) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        command += ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MILLISECONDS)]
        # A replica may take over however long its master was silent: tests kill masters on purpose.
        command += ["--cluster-replica-validity-factor", "0"]
        # A replica's first sync starts at once, not after the default 5 s wait for other replicas.
        command += ["--repl-diskless-sync-delay", "0"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"]
        log = (self.directory / "redis.log").open("ab")
        try:
            self.process = await anyio.open_process(command, stdout=log, stderr=log)
        finally:
            log.close()
        client = self.client()
        try:
            with anyio.fail_after(START_TIMEOUT_SECONDS):
                while True:
                    try:
                        await client.ping()
                        return
                    except (RedisError, OSError):
                        await anyio.sleep(POLL_INTERVAL_SECONDS)
        finally:
            await client.aclose()

    def pause(self) -> None:
        """SIGSTOP: the port accepts but nothing answers, as with a hung node or a partition."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    async def kill(self) -> None:
        """SIGKILL, as when a machine or a process dies: connections drop and the port refuses."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None

    async def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO as this node sees it (`cluster_state`, `cluster_known_nodes`...)."""
        client = self.client()
        try:
            info: dict[str, str] = await client.cluster("INFO")
            return info
        finally:
            await client.aclose()

    async def cluster_nodes(self) -> list[ClusterNodeView]:
        client = self.client()
        try:
            return _views(await client.cluster("NODES"))
        finally:
            await client.aclose()

    async def replication(self) -> dict[str, Any]:
        client = self.client()
        try:
            return await client.info("replication")
        finally:
            await client.aclose()


class LocalRedisCluster:
    """Six nodes on loopback: three masters, each with one replica."""

    def __init__(self, directory: Path) -> None:
        server = _executable("redis-server")
        self.cli = _executable("redis-cli")
        ports: list[int] = []
        while len(ports) < 4 * MASTERS:  # a port and a bus port per node, no two alike
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.nodes = [
            ClusterNodeServer(server, directory / f"node-{number}", ports[2 * number], ports[2 * number + 1])
            for number in range(2 * MASTERS)
        ]

    @property
    def url(self) -> str:
        """REDIS_URL naming the cluster by every node as a seed."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def node_on(self, port: int) -> ClusterNodeServer:
        return next(node for node in self.nodes if node.port == port)

    async def create(self) -> None:
        """Start every node, join them (replicas assigned by redis-cli) and wait until the cluster is healthy."""
        async with anyio.create_task_group() as group:
            for node in self.nodes:
                group.start_soon(node.start)
        command = [self.cli, "--cluster", "create", *(node.address for node in self.nodes)]
        command += ["--cluster-replicas", "1", "--cluster-yes"]
        with anyio.fail_after(START_TIMEOUT_SECONDS):
            result = await anyio.run_process(command, check=False, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout.decode()}")
        await self.wait_until_healthy()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.kill()

    async def topology(self) -> list[ClusterNodeView]:
        """CLUSTER NODES as the first running node sees it."""
        for node in self.nodes:
            if node.running:
                try:
                    return await node.cluster_nodes()
                except (RedisError, OSError):
                    continue
        raise RuntimeError("no node of the cluster answers")

    async def masters(self) -> list[ClusterNodeServer]:
        """The nodes serving slots now, in slot order."""
        views = sorted((view for view in await self.topology() if view.is_master and view.slots), key=_first_slot)
        return [self.node_on(view.port) for view in views]

    async def master_of_slot(self, slot: int) -> ClusterNodeServer | None:
        """The master serving `slot` now (None while its master is failing and no replica took over)."""
        for view in await self.topology():
            if view.is_master and view.owns(slot):
                return self.node_on(view.port)
        return None

    async def is_healthy(self) -> bool:
        """Every running node says `cluster_state:ok`, knows the others, and every replica has synced."""
        running = [node for node in self.nodes if node.running]
        try:
            for node in running:
                info = await node.cluster_info()
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                    return False
                replication = await node.replication()
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
        except (RedisError, OSError):
            return False
        masters = [view for view in await self.topology() if view.is_master and view.slots]
        return len(masters) == MASTERS

    async def wait_until_healthy(self, within: float = START_TIMEOUT_SECONDS) -> None:
        with anyio.move_on_after(within):
            while True:
                if await self.is_healthy():
                    return
                await anyio.sleep(POLL_INTERVAL_SECONDS)
        logs = self.nodes[0].directory.parent
        raise RuntimeError(f"the Redis Cluster was not healthy within {within} s (node logs under {logs})")


def _first_slot(view: ClusterNodeView) -> int:
    return min(first for first, _ in view.slots)


@asynccontextmanager
async def running_redis_cluster(directory: Path) -> AsyncIterator[LocalRedisCluster]:
    """A healthy three-master, three-replica cluster under `directory`; every node killed at the end."""
    cluster = LocalRedisCluster(directory)
    try:
        await cluster.create()
        yield cluster
    finally:
        await cluster.stop()
