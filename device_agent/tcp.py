"""TCP mode: several clients served side by side, one board between them."""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from typing import Callable, Dict, List, Optional

from .handlers import Handlers
from .links import SocketLink, TcpListener
from .protocol import ErrorCode, FrameDecoder, Skipped
from .server import Agent, Board, error_frame
from .tcp_limits import AuthThrottle, TcpLimits

log = logging.getLogger("device_agent")


class TcpServer:
    """Serves TCP clients side by side, each in its own thread with its own ``Agent``.

    Shared between them: the board (handlers, model store, runner) and the failed-hello
    throttle. Per connection: authentication, reply cache, held payload, upload in flight.

    Slots are kept for authenticated clients: when a connection arrives and there is no
    room, the oldest connection still waiting for a hello with the right token is closed to
    make room (one from the address with most such connections; from the newcomer's own
    address when that address has ``max_unauthenticated_per_address`` waiting already).
    Only when every slot is authenticated is the newcomer refused with ``busy``. So silent
    sockets, from however many addresses, cannot keep a real client out.
    """

    #: Connections over the limit being answered "busy" at once; beyond, simply closed.
    _MAX_REFUSING = 2
    #: How long a refused connection is given to send the frame its "busy" answers.
    _REFUSE_WAIT_S = 2.0

    def __init__(
        self,
        listener: TcpListener,
        handlers: Handlers,
        token: str,
        *,
        heartbeat_s: float = 1.0,
        limits: Optional[TcpLimits] = None,
    ) -> None:
        self.listener = listener
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.limits = limits = limits or TcpLimits()
        self.board = Board(handlers)
        self.throttle = AuthThrottle(limits)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._links: Dict[int, SocketLink] = {}
        self._peers: Dict[int, str] = {}  # by id(link), as _links
        self._agents: Dict[int, Agent] = {}  # once its thread has made it
        self._since: Dict[int, float] = {}  # when each connection was admitted
        self._threads: List[threading.Thread] = []
        self._refusing = 0

    def serve(self) -> None:
        """Accept until a client's ``shutdown``; then end the other connections."""
        try:
            while not self._stop.is_set():
                try:
                    accepted = self.listener.accept(0.5)
                except OSError as exc:  # out of file descriptors, say: wait, never crash
                    log.error("accept failed: %s", exc)
                    self._stop.wait(0.5)
                    continue
                if accepted is not None:
                    self._admit(*accepted)
        finally:
            self._stop.set()
            self.listener.close()
            self._end_all()

    def _waiting(self) -> List[int]:
        """Connections not (yet) authenticated, oldest first; call holding the lock."""
        keys = [k for k in self._links if not (k in self._agents and self._agents[k].authenticated)]
        return sorted(keys, key=lambda k: self._since[k])

    def _victim(self, peer: str) -> Optional[int]:
        """The connection to close to make room for one from ``peer``, if any may go."""
        waiting = self._waiting()
        mine = [k for k in waiting if self._peers[k] == peer]
        if len(mine) >= self.limits.max_unauthenticated_per_address:
            return mine[0]
        if len(self._links) < self.limits.max_connections or not waiting:
            return None
        per_address: Dict[str, int] = {}
        for key in waiting:
            per_address[self._peers[key]] = per_address.get(self._peers[key], 0) + 1
        most = max(per_address.values())
        return next(k for k in waiting if per_address[self._peers[k]] == most)

    def _make_room(self, peer: str) -> None:
        """Close waiting connections until ``peer``'s may come in; call holding the lock."""
        while True:
            key = self._victim(peer)
            if key is None:
                return
            agent, link = self._agents.get(key), self._links[key]
            if agent is not None and not agent.evict():
                continue  # it authenticated meanwhile: it counts as such now
            if agent is None:
                link.interrupt()  # its thread will find the stream ended
            log.info("connection from %s closed to make room for %s", link.name, peer)
            for table in (self._links, self._peers, self._since):
                table.pop(key, None)

    def _admit(self, link: SocketLink, peer: str) -> None:
        lim = self.limits
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._make_room(peer)
            why = None
            if len(self._links) >= lim.max_connections:
                why = (
                    f"the agent serves at most {lim.max_connections} connections at a time, "
                    "all of them authenticated"
                )
            refuse = why is not None and self._refusing < self._MAX_REFUSING
            if refuse:
                self._refusing += 1
            elif why is None:
                self._links[id(link)], self._peers[id(link)] = link, peer
                self._since[id(link)] = time.monotonic()
        if why is not None and not refuse:
            log.info("connection from %s closed: %s", link.name, why)
            link.close()
            return
        if why is not None:
            target: Callable[[], None] = functools.partial(self._refuse, link, why)
        else:
            target = functools.partial(self._serve_one, link, peer)
        thread = threading.Thread(target=target, name=f"tcp {link.name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _serve_one(self, link: SocketLink, peer: str) -> None:
        log.info("connection from %s", link.name)
        try:
            agent = Agent(
                link,
                self.board.handlers,
                token=self.token,
                heartbeat_s=self.heartbeat_s,
                board=self.board,
                limits=self.limits,
                throttle=self.throttle,
                peer=peer,
                stop=self._stop,
            )
            with self._lock:
                if id(link) not in self._links:  # evicted before its agent was made
                    return
                self._agents[id(link)] = agent
            if agent.serve() == "shutdown":
                log.info("shutdown requested by %s", link.name)
                self._stop.set()
        except Exception:  # whatever happens to one connection, the others are served
            log.error("connection from %s failed:\n%s", link.name, traceback.format_exc())
        finally:
            with self._lock:
                if self._links.get(id(link)) is link:
                    for table in (self._links, self._peers, self._since):
                        table.pop(id(link), None)
                self._agents.pop(id(link), None)
            link.close()

    def _refuse(self, link: SocketLink, why: str) -> None:
        """Answer the first frame of a connection over a limit with ``busy``, and close."""
        message = f"{why}; try again later"
        try:
            decoder = FrameDecoder()
            deadline = time.monotonic() + self._REFUSE_WAIT_S
            seq = 0
            while seq == 0 and time.monotonic() < deadline:
                data = link.read(max(deadline - time.monotonic(), 0.01))
                if data is None:
                    return
                decoder.feed(data)
                seq = next((e.seq for e in decoder.events() if not isinstance(e, Skipped)), 0)
            link.write(error_frame(seq, ErrorCode.BUSY, message))
        except Exception as exc:  # a refused client gets what it gets
            log.info("refusing %s: %s", link.name, exc)
        finally:
            link.close()
            with self._lock:
                self._refusing -= 1

    def _end_all(self) -> None:
        """Stop serving: interrupt every connection, let its thread finish (bounded)."""
        with self._lock:
            links, threads = list(self._links.values()), list(self._threads)
            agents = list(self._agents.values())
        self.board.handlers.abort()
        for agent in agents:
            agent.close_soon()
        for link in links:
            link.interrupt()
        deadline = time.monotonic() + 10.0
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
