"""`http_client` builds every httpx client of the package.

Environment proxies are read here, not by httpx, so that plain http (the loopback emulator) never
goes through a proxy and https only through one named for https (`HTTPS_PROXY`/`https_proxy`,
else `ALL_PROXY`/`all_proxy`), minus the hosts of `NO_PROXY`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import httpx

from reconciler import __version__, interrupt
from reconciler.errors import ConfigError

USER_AGENT = f"vertex-tuning-reconciler/{__version__}"


def proxy_for_https(environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """(the proxy URL for https requests or None, the NO_PROXY entries) named by the environment.

    `https_proxy`, else `all_proxy`; a lower-case variable wins over its upper-case twin, as curl
    reads them. `http_proxy` is never used: plain http goes direct."""
    env = os.environ if environ is None else environ

    def read(name: str) -> str:
        for key in (name, name.upper()):
            if key in env:
                return env[key].strip()
        return ""

    proxy = read("https_proxy") or read("all_proxy") or None
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    no_proxy = [host.strip() for host in read("no_proxy").split(",") if host.strip()]
    return proxy, no_proxy


def _no_proxy_pattern(host: str) -> str:
    """An httpx mount pattern for one NO_PROXY entry (curl's reading, as httpx's own)."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "all://localhost" if host.lower() == "localhost" else f"all://*{host}"
    return f"all://[{address}]" if address.version == 6 else f"all://{address}"


# -- one TLS context per process ------------------------------------------------------------------
# Loading the CA bundle takes ~30 ms, mostly outside the GIL: `prefetch_tls` starts it on a thread
# of its own as a run begins, so that it is ready when the first client is built; every client
# then shares it (an SSLContext may serve many connections and threads).
_tls_lock = threading.Lock()
_tls: dict[tuple[str, str], Future[ssl.SSLContext]] = {}


def _tls_key() -> tuple[str, str]:
    """What the context depends on: SSL_CERT_FILE and SSL_CERT_DIR, as httpx reads them."""
    return os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", "")


def _build_tls(future: Future[ssl.SSLContext]) -> None:
    interrupt.worker_thread()
    try:
        future.set_result(httpx.create_ssl_context(trust_env=True))
    except BaseException as exc:  # handed to whoever asks for the context
        future.set_exception(exc)


def prefetch_tls() -> None:
    """Start building the TLS context in the background (a no-op once started)."""
    key = _tls_key()
    with _tls_lock:
        if key in _tls:
            return
        future: Future[ssl.SSLContext] = Future()
        _tls[key] = future
    threading.Thread(target=_build_tls, args=(future,), name="reconciler-tls", daemon=True).start()


def tls_context() -> ssl.SSLContext:
    """The process's TLS context (certificates from SSL_CERT_FILE / SSL_CERT_DIR, else certifi's,
    as httpx builds it)."""
    prefetch_tls()
    with _tls_lock:
        future = _tls[_tls_key()]
    return future.result()


def http_client(*, limits: httpx.Limits | None = None, environ: Mapping[str, str] | None = None,
                **options: Any) -> httpx.Client:
    """An httpx.Client that reads no proxy from the environment by itself (`trust_env=False`):
    http goes direct; https through the proxy named for https, except NO_PROXY hosts.
    Certificates from SSL_CERT_FILE / SSL_CERT_DIR are still honoured."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    proxy, no_proxy = proxy_for_https(environ)
    mounts: dict[str, httpx.BaseTransport | None] = {}
    if proxy and "*" not in no_proxy:
        try:
            mounts["https://"] = httpx.HTTPTransport(proxy=proxy, limits=limits, trust_env=True, verify=tls_context())
        except (ImportError, ValueError, httpx.HTTPError) as exc:
            raise ConfigError(
                "the proxy named by HTTPS_PROXY/ALL_PROXY cannot be used "
                f"({type(exc).__name__}; only http:// and https:// proxies are supported)"
            ) from None
        mounts.update({_no_proxy_pattern(host): None for host in no_proxy})
    return httpx.Client(
        transport=httpx.HTTPTransport(limits=limits, trust_env=True, verify=tls_context()),
        mounts=mounts,
        trust_env=False,
        **options,
    )
