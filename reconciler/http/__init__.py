"""HTTP for every remote service the reconciler talks to (Vertex AI, Cloud Storage).

Below `vertex` and `storage`, above `errors`:

- `retry`: `RetryPolicy`, how failed calls are retried — no dependency, so `config` holds one
  without importing httpx;
- `transport`: `Transport`, the retrying sender over an injectable `httpx.Client`, with error
  mapping parametrised by the service's name, body decoding and counters;
- `clients`: `http_client`, the one place an `httpx.Client` is built (proxies from the
  environment, read here and not by httpx);
- `ratelimit`: per-region sliding-window pacing under per-minute quotas;
- `redact`: credentials masked and control characters escaped in every message and every string
  built from foreign text (`clean`, `clean_tree`: the transport cleans every JSON answer);
- `paging`: the bounds of a paged listing (a repeated token, empty pages in a row, pages, items);
- `endpoint`: the syntax of an API endpoint setting (no HTTP library: the settings check it).

This `__init__` imports nothing, so that `reconciler.http.retry` stays light.
"""
