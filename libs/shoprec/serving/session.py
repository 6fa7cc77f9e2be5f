"""The in-memory session: what a user carted or bought through ``POST /v1/events`` in the last
``serve.session_minutes``, so the very next request reflects it before the stream's durable
update arrives. Per process (several API processes: route a user to one, or accept that the
session effect waits for the stream there)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from shoprec import columns as C

MAX_USERS = 200_000  # sessions kept; the least recently active go first
MAX_EVENTS = 50  # per user


@dataclass(frozen=True)
class SessionEvent:
    item_id: str
    event_type: str  # cart | purchase
    at: float  # time.time() when it was posted


class Sessions:
    def __init__(self, minutes: float, clock=time.time):  # type: ignore[no-untyped-def]
        self.ttl = minutes * 60.0
        self.clock = clock
        self._users: OrderedDict[str, list[SessionEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, user_id: str, item_id: str, event_type: str) -> None:
        if event_type not in (C.CART, C.PURCHASE):
            return  # views and returns do not change the list here
        now = self.clock()
        with self._lock:
            events = self._users.pop(user_id, [])
            events = [e for e in events if now - e.at <= self.ttl][-(MAX_EVENTS - 1) :]
            events.append(SessionEvent(item_id, event_type, now))
            self._users[user_id] = events
            while len(self._users) > MAX_USERS:
                self._users.popitem(last=False)

    def events(self, user_id: str) -> list[SessionEvent]:
        """The user's live session events, newest first."""
        now = self.clock()
        with self._lock:
            events = self._users.get(user_id)
            if not events:
                return []
            live = [e for e in events if now - e.at <= self.ttl]
            if len(live) != len(events):
                if live:
                    self._users[user_id] = live
                else:
                    del self._users[user_id]
        return live[::-1]

    def __len__(self) -> int:
        return len(self._users)
