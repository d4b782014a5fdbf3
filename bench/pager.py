"""The minimal pager as a process: stdlib only (http.client, json, threads), one keep-alive
connection and one thread per region, every page of `GET …/tuningJobs?pageSize=1000` following
`nextPageToken`, each page JSON-decoded and nothing else. Its wall time from spawn to exit is the
bound a whole `reconciler plan` process is compared with: the API's pages plus Python's own
start-up, nothing of the reconciler.

    python bench/pager.py URL PROJECT REGION [REGION …]    (prints the number of jobs)

With `--preload MODULE,MODULE…` first, the pager imports those modules before its first request
(and uses none of them): the bound of a process that cannot start without those libraries. A
`pydantic` among them also gets one model class built (`class M(BaseModel): x: int`): `import
pydantic` alone loads little, its model machinery is imported with the first model, and no
program that uses pydantic avoids that. httpx is imported without its own command line, as
`reconciler plan` imports it. With `--preload-after MODULE,MODULE…` the same imports come after
the first requests have left, on the main thread while the pages arrive: what those libraries
would cost a process that could send its first request without them.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import urllib.parse

PAGE_SIZE = 1000


def list_region(url: str, project: str, region: str, counts: dict[str, int]) -> None:
    """Every page of one region over one connection; the number of jobs goes to `counts`."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    path = f"/v1/projects/{project}/locations/{region}/tuningJobs"
    jobs, token = 0, ""
    while True:
        query = {"pageSize": str(PAGE_SIZE), **({"pageToken": token} if token else {})}
        connection.request("GET", f"{path}?{urllib.parse.urlencode(query)}")
        response = connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"{region}: HTTP {response.status}")
        jobs += len(body.get("tuningJobs", []))
        token = body.get("nextPageToken", "")
        if not token:
            break
    connection.close()
    counts[region] = jobs


def one_model() -> None:
    """What any program that uses pydantic pays once: its first model class."""
    import pydantic

    pydantic.create_model("M", x=(int, ...))


def preload(modules: list[str]) -> None:
    """Import `modules` (and build one pydantic model when pydantic is among them)."""
    # httpx imports its own command line (click, rich, pygments) unless that module is missing;
    # `reconciler plan` marks it missing (cli/app.py, _lean_process), so the floor does the same:
    # what the libraries cost as plan uses them, not more.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
    for module in modules:
        __import__(module)
        if module == "pydantic":
            one_model()


def main(argv: list[str]) -> int:
    before: list[str] = []
    after: list[str] = []
    while argv[:1] in (["--preload"], ["--preload-after"]):
        (before if argv[0] == "--preload" else after).extend(argv[1].split(","))
        argv = argv[2:]
    preload(before)
    url, project, regions = argv[0], argv[1], argv[2:]
    counts: dict[str, int] = {}
    threads = [threading.Thread(target=list_region, args=(url, project, r, counts)) for r in regions]
    for thread in threads:
        thread.start()
    if after:  # on the main thread while the first pages are on their way
        preload(after)
    for thread in threads:
        thread.join()
    if len(counts) != len(regions):
        return 1
    print(sum(counts.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
