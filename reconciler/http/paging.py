"""The bounds of a paged listing (Vertex AI jobs, Cloud Storage objects): a server that never
ends its list is stopped with an error naming the listing, quickly.

Three bounds: a page token seen before (a loop); `max_empty` empty pages in a row that still
carry a new next token (the quick stop: the page bound alone, paced by the request quota, takes
minutes); more than `max_pages` pages or `max_items` items in all.
"""

from __future__ import annotations

import json
import re

from reconciler.errors import TransportError
from reconciler.http.redact import clean

# Empty pages with a next token, in a row: a server may send a few (AIP-158 allows a page shorter
# than asked, even an empty one), never this many.
MAX_EMPTY_PAGES = 20


class Pager:
    """The state of one listing's page loop: the token to send, and the bounds."""

    def __init__(self, what: str, items: str, *, max_pages: int, max_items: int,
                 max_empty: int = MAX_EMPTY_PAGES) -> None:
        self.what = what  # e.g. "the list of tuning jobs of projects/p/locations/r"
        self.items = items
        self.max_pages = max_pages
        self.max_items = max_items
        self.max_empty = max_empty
        self.token = ""
        self.pages = 0
        self.total = 0
        self._seen: set[str] = set()
        self._empty = 0

    def __iter__(self) -> Pager:
        return self

    def __next__(self) -> int:
        """The number of the next page to ask for; TransportError past `max_pages`."""
        if self.pages and not self.token:
            raise StopIteration
        if self.pages >= self.max_pages:
            raise TransportError(f"{self.what} did not end after {self.max_pages} pages "
                                 f"({self.total} {self.items}); stopping")
        self.pages += 1
        return self.pages

    def would_follow(self, token: str, most: int) -> bool:
        """Whether the loop will ask for the page of `token` if the page at hand names it, whatever
        that page holds up to `most` items (the page size asked for): a new token, within every
        bound. A guess at the next page may then be sent before the page at hand is decoded; a
        page that could end the listing on a bound sends nothing early."""
        return (bool(token) and token not in self._seen and self.pages < self.max_pages
                and self._empty + 1 < self.max_empty and self.total + most <= self.max_items)

    def asks_again(self) -> bool:
        """Whether the loop will ask for another page (what `__next__` says next), so that the
        request can be sent before the current page is worked on."""
        return bool(self.token) and self.pages < self.max_pages

    def took(self, count: int, token: str) -> None:
        """Record a page of `count` items and its next-page token ('' at the end); raises
        TransportError when the server is not ending its list."""
        self.total += count
        self.token = token
        if not token:
            return
        if token in self._seen:  # a server bug would otherwise loop for ever
            raise TransportError(f"{self.what} returned a page token twice (page {self.pages + 1}); stopping")
        self._seen.add(token)
        self._empty = 0 if count else self._empty + 1
        if self._empty >= self.max_empty:
            raise TransportError(
                f"{self.what}: the server keeps returning empty pages with new page tokens "
                f"({self._empty} in a row, {self.pages} pages, {self.total} {self.items}); stopping")
        if self.total > self.max_items:
            raise TransportError(f"{self.what} returned more than {self.max_items:,} {self.items} "
                                 f"({self.pages} pages); stopping: is the server repeating itself?")


# The last `"nextPageToken": "…"` of a body: the key, then a JSON string literal (escapes and all:
# a server may write `=` as `\u003d`). Linear: no two ways to match a character of the literal.
_NEXT_TOKEN = re.compile(rb'"nextPageToken"\s*:\s*("(?:[^"\\]|\\.)*")')


def next_token_in(content: bytes) -> str:
    """A guess at a list answer's next-page token, read from its bytes before they are decoded:
    the value of the last `nextPageToken` key ('' when there is none, its value is not a valid
    JSON string, or cleaning would change it). Only a guess: a job could hold such a key too;
    the decoded page says which token is right."""
    at = content.rfind(b'"nextPageToken"')
    found = _NEXT_TOKEN.match(content, at) if at >= 0 else None
    if found is None:
        return ""
    try:
        token = json.loads(found.group(1))
    except ValueError:  # a raw control character, a bad escape: left to the decoded page
        return ""
    # What the decoded page will say, cleaned as every string of an answer is: a token that
    # cleaning changes (a control character, something like a credential) is not sent early.
    return token if isinstance(token, str) and clean(token) == token else ""
