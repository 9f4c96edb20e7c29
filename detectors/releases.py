"""A new release in an app's traffic: what starts a rollout when nobody registered one.

An app may opt in (``RUMGATE_AUTO_ROLLOUT_APPS``) to having its rollouts start by
themselves: when its page views show a release that was not there before, the judge starts
rollout ``APP:RELEASE`` against the release that carries most of the app's traffic, from
the window where the new release first appeared. It watches the judged windows, so it is
event time throughout: a restarted judge, re-reading ``rum.windows``, notices the same
release at the same window.

A release is *new* while it has had ``min_page_views`` page views within ``within_ms``,
the app had been watched for ``known_after_ms`` before it first appeared (so a worker that
just started does not take every release it sees for new), and it is not the release with
most page views. Whether a new release gets a rollout is the caller's to decide (the worker
starts none while the app has a running rollout); it is offered at every window it is new.

>>> watch = ReleaseWatch(known_after_ms=60_000, min_page_views=20, within_ms=30_000)
>>> for start in range(0, 60_000, 5_000):
...     assert watch.observe("shop", start, {"r1": 100}) == []  # r1 is what the app runs
>>> watch.observe("shop", 60_000, {"r1": 95, "r2": 5})          # r2 appears: too few yet
[]
>>> for start in range(65_000, 80_000, 5_000):
...     found = watch.observe("shop", start, {"r1": 95, "r2": 5})
>>> found
[NewRelease(app='shop', release='r2', baseline='r1', first_seen=60000)]
>>> watch.observe("other", 0, {"r7": 500})                       # just watched: nothing is new
[]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["NewRelease", "ReleaseWatch", "DEFAULT_KNOWN_AFTER_MS", "DEFAULT_MIN_PAGE_VIEWS",
           "DEFAULT_WITHIN_MS", "MAX_RELEASES_PER_APP"]

DEFAULT_KNOWN_AFTER_MS = 3_600_000  # an hour of an app's traffic before anything in it is "new"
DEFAULT_MIN_PAGE_VIEWS = 100
DEFAULT_WITHIN_MS = 300_000
#: Releases remembered per app (the least recently seen go first): anyone who can post
#: beacons can invent release names, which must not grow the judge without bound.
MAX_RELEASES_PER_APP = 64


@dataclass(frozen=True)
class NewRelease:
    app: str
    release: str
    baseline: str  # the release with most page views when ``release`` became new
    first_seen: int  # start of the first window with a page view of it (epoch ms)


@dataclass
class _App:
    watched_from: int
    first_seen: dict[str, int] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    recent: deque = field(default_factory=deque)  # (start, {release: page views}), within the horizon


class ReleaseWatch:
    """Per app, the releases its windows have shown; :meth:`observe` announces a new one."""

    def __init__(self, known_after_ms: int = DEFAULT_KNOWN_AFTER_MS, min_page_views: int = DEFAULT_MIN_PAGE_VIEWS,
                 within_ms: int = DEFAULT_WITHIN_MS, max_releases: int = MAX_RELEASES_PER_APP) -> None:
        self.known_after_ms, self.min_page_views, self.within_ms = known_after_ms, min_page_views, within_ms
        self.max_releases = max_releases
        self.apps: dict[str, _App] = {}

    def observe(self, app: str, start: int, page_views: dict[str, int]) -> list[NewRelease]:
        """One judged window of ``app`` (windows in time order): page views per release.
        The releases that are new at this window, by name."""
        a = self.apps.get(app)
        if a is None:
            a = self.apps[app] = _App(watched_from=start)
        seen = {r: n for r, n in page_views.items() if n > 0}
        for release in seen:
            a.first_seen.setdefault(release, start)
            a.last_seen[release] = start
        self._forget(a)
        seen = {r: n for r, n in seen.items() if r in a.last_seen}  # what a flood pushed out is not kept
        a.recent.append((start, seen))
        while a.recent and a.recent[0][0] <= start - self.within_ms:
            a.recent.popleft()
        totals: dict[str, int] = {}
        for _, window in a.recent:
            for release, n in window.items():
                totals[release] = totals.get(release, 0) + n
        if not totals:
            return []
        top = max(sorted(totals), key=totals.__getitem__)
        # A release there from (nearly) the start of the watch is not known to be new.
        return [NewRelease(app, release, top, a.first_seen[release]) for release in sorted(seen)
                if release != top and totals[release] >= self.min_page_views and release in a.first_seen
                and a.first_seen[release] >= a.watched_from + self.known_after_ms]

    def _forget(self, a: _App) -> None:
        excess = len(a.last_seen) - self.max_releases
        if excess > 0:
            for release in sorted(a.last_seen, key=lambda r: (a.last_seen[r], r))[:excess]:
                del a.last_seen[release]
                a.first_seen.pop(release, None)
