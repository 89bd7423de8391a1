"""The Procfile topology on one machine, for the chat reliability tests and the chat bench: a standalone WeChat
sandbox and several `python app.py serve` processes on one PostgreSQL database and one Redis, each on a free
loopback port. Helper module (no `main`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import ServerProcess, free_port, key32

# Variables of the caller's environment that must not leak into the processes (each cluster sets its own).
SERVER_ENV = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "PORT", "HOST", "DATA_DIR", "WECHAT_API_BASE",
              "JWT_SECRET", "DATA_KEY", "LOOKUP_KEY", "SEED_DEMO", "LOG_LEVEL")


@dataclass
class Cluster:
    database_url: str
    redis_url: str
    prefix: str
    work: Path
    webs: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    sandbox_port: int = field(default_factory=free_port)
    ports: list[int] = field(default_factory=list)
    processes: list[ServerProcess] = field(default_factory=list)
    sandbox: ServerProcess | None = None

    def __post_init__(self) -> None:
        self.ports = [free_port() for _ in range(self.webs)]
        self.env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV} | {
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "REDIS_PREFIX": self.prefix,
            "WECHAT_API_BASE": self.sandbox_url, "HOST": "127.0.0.1", "JWT_SECRET": key32(), "DATA_KEY": key32(),
            "LOOKUP_KEY": key32(), "DATA_DIR": str(self.work / "data"), "LOG_LEVEL": "WARNING",
            "EMBEDDED_HIS": "true", **self.extra_env}

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    async def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.sandbox = ServerProcess(["-m", "wechat.sandbox", "--port", str(self.sandbox_port)], self.env,
                                     self.work / "sandbox.log")
        self.sandbox.start()
        await self.sandbox.wait_ready(f"{self.sandbox_url}/sandbox/stats")
        for index in range(self.webs):
            self.processes.append(self.web(index))
        await asyncio.gather(*(self.wait_web(i) for i in range(self.webs)))

    def web(self, index: int) -> ServerProcess:
        process = ServerProcess(["app.py", "serve"], {**self.env, "PORT": str(self.ports[index])},
                                self.work / f"web-{index + 1}.log")
        process.start()
        return process

    async def wait_web(self, index: int) -> None:
        await self.processes[index].wait_ready(f"{self.url(index)}/healthz")

    def kill(self, index: int) -> None:
        """SIGKILL one web process: no shutdown, no goodbye to its sockets."""
        process = self.processes[index].process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in [*self.processes, *([self.sandbox] if self.sandbox else [])]:
            process.stop()

    def logs(self) -> str:
        parts = [f"--- {p.log.name}\n{p.tail()}" for p in [*([self.sandbox] if self.sandbox else []), *self.processes]]
        return "\n".join(parts)

    def rss_kb(self, index: int) -> int:
        return rss_kb(self.processes[index])


def rss_kb(server: ServerProcess) -> int:
    """Resident memory of a server process (Linux /proc), KB."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def login(session: aiohttp.ClientSession, cluster: Cluster, openid: str, web: int = 0) -> str:
    """An access token for `openid`, logged in through the sandbox like the mini-program does."""
    async with session.post(f"{cluster.sandbox_url}/sandbox/login-code", json={"openid": openid}) as resp:
        code = (await resp.json())["code"]
    async with session.post(f"{cluster.url(web)}/api/v1/auth/wx-login", json={"code": code}) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login of {openid} failed: {resp.status} {body}")
        return body["access_token"]


async def ticket(session: aiohttp.ClientSession, base: str, token: str) -> str:
    async with session.post(f"{base}/api/v1/realtime/ticket", headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"ticket refused: {resp.status} {body}")
        return body["ticket"]


class Peer:
    """One chat client: its socket (to one web process), what it received and what it sent."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: dict[str, list[int]] = {}  # conversation id -> every seq received, duplicates kept
        self.received_at: dict[tuple[str, int], float] = {}
        self.acks: dict[str, int] = {}  # client_msg_id -> seq
        self.errors: list[dict] = []
        self._acked: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def connect(self, session: aiohttp.ClientSession, base: str, sync: dict[str, int] | None = None) -> None:
        self.closed = asyncio.Event()
        value = await ticket(session, base, self.token)
        self.ws = await session.ws_connect(f"{base}/api/v1/realtime?ticket={value}", heartbeat=None, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        if sync:
            await self.ws.send_str(json.dumps({"type": "sync", "conversations": sync}))

    def last_seqs(self) -> dict[str, int]:
        """What a client would send on reconnect: the highest seq it has of each conversation, with no gap
        below it (a client keeps its messages in seq order)."""
        out = {}
        for conversation, seqs in self.received.items():
            have, n = set(seqs), 0
            while n + 1 in have:
                n += 1
            out[conversation] = n
        return out

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "message":
                    seq = frame["message"]["seq"]
                    self.received.setdefault(frame["conversation_id"], []).append(seq)
                    self.received_at.setdefault((frame["conversation_id"], seq), time.perf_counter())
                elif kind == "ack":
                    self.acks[frame["client_msg_id"]] = frame["seq"]
                    waiter = self._acked.pop(frame["client_msg_id"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame["seq"])
                elif kind == "error":
                    self.errors.append(frame)
                    waiter = self._acked.pop(str(frame.get("ref")), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(RuntimeError(f"refused: {frame}"))
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for waiter in self._acked.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("socket closed"))
            self._acked.clear()

    async def send(self, conversation_id: str, client_msg_id: str, text: str, timeout: float = 10.0) -> int:
        """Send one text message; its seq once acked (raises if the socket goes away first)."""
        assert self.ws is not None
        waiter = asyncio.get_running_loop().create_future()
        self._acked[client_msg_id] = waiter
        await self.ws.send_str(json.dumps({"type": "send", "conversation_id": conversation_id, "message": {
            "client_msg_id": client_msg_id, "type": "text", "text": text}}))
        return await asyncio.wait_for(waiter, timeout)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
