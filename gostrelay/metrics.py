"""
Prometheus metrics with GOST's names and labels, so that existing GOST
dashboards (grafana 16037) work: C{-metrics :9000} as GOST users type it,
or YAML C{metrics: {addr, path}}.

GOST's: gost_services, gost_service_requests_total,
gost_service_requests_in_flight, gost_service_request_duration_seconds,
gost_service_transfer_input_bytes_total / _output_bytes_total,
gost_service_handler_errors_total, gost_chain_errors_total,
gost_chain_node_connect_duration_seconds.  Ours: gostrelay_udp_sessions,
gostrelay_bind_sessions.

Nothing is measured until L{enable} is called: without C{-metrics} the
services run unwrapped, at no cost.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.web.resource import Resource

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)

DEFAULT_PATH = "/metrics"


class Metrics:
    """
    The metric families of one process, in their own registry.
    """

    def __init__(self, host: str | None = None) -> None:
        # Imported here: a process without -metrics does not load it.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.host = host or socket.gethostname()
        self.registry = CollectorRegistry()
        r = self.registry
        self.services = Gauge("gost_services", "Current number of services", ["host"], registry=r)
        self.requests = Counter("gost_service_requests", "Total number of requests", ["host", "service"], registry=r)
        self.inFlight = Gauge(
            "gost_service_requests_in_flight", "Current in-flight requests", ["host", "service"], registry=r
        )
        self.duration = Histogram(
            "gost_service_request_duration_seconds", "Distribution of request latencies",
            ["host", "service"], buckets=BUCKETS, registry=r,
        )
        self.inputBytes = Counter(
            "gost_service_transfer_input_bytes", "Total service input data transfer size in bytes",
            ["host", "service"], registry=r,
        )
        self.outputBytes = Counter(
            "gost_service_transfer_output_bytes", "Total service output data transfer size in bytes",
            ["host", "service"], registry=r,
        )
        self.handlerErrors = Counter(
            "gost_service_handler_errors", "Total service handler errors", ["host", "service"], registry=r
        )
        self.chainErrors = Counter("gost_chain_errors", "Total chain errors", ["host", "chain", "node"], registry=r)
        self.nodeConnect = Histogram(
            "gost_chain_node_connect_duration_seconds", "Distribution of chain node connect latencies",
            ["host", "chain", "node"], buckets=BUCKETS, registry=r,
        )
        self.udpSessions = Gauge(
            "gostrelay_udp_sessions", "Current UDP sessions", ["host", "service"], registry=r
        )
        self.bindSessions = Gauge(
            "gostrelay_bind_sessions", "Current BIND sessions on a relay server", ["host", "service"], registry=r
        )


#: The process's metrics, once enabled.
current: Metrics | None = None


def enable(host: str | None = None) -> Metrics:
    global current
    if current is None:
        current = Metrics(host)
    return current


def disable() -> None:
    global current
    current = None


def chainConnected(chain: str, node: str, seconds: float) -> None:
    if current is not None:
        current.nodeConnect.labels(current.host, chain, node).observe(seconds)


def chainFailed(chain: str, node: str) -> None:
    if current is not None:
        current.chainErrors.labels(current.host, chain, node).inc()


def gauge(name: str, service: str, delta: int) -> None:
    if current is not None:
        getattr(current, name).labels(current.host, service).inc(delta)


def transferred(service: str, received: int, sent: int) -> None:
    """
    Count a finished connection's bytes: C{received} from the client (GOST's
    input), C{sent} to it (output).
    """
    if current is not None:
        current.inputBytes.labels(current.host, service).inc(received)
        current.outputBytes.labels(current.host, service).inc(sent)


def metricsSite(metrics: Metrics, path: str = DEFAULT_PATH, users: Any = None) -> Any:
    """
    A twisted.web site serving C{metrics} at C{path} (HTTP Basic auth when
    C{users}, an L{gostrelay.auth.Authenticator}, is given).
    """
    # Imported here: a process without -metrics does not load them.
    from prometheus_client.twisted import MetricsResource
    from twisted.web.server import Site

    resource: Any = MetricsResource(registry=metrics.registry)
    if users is not None:
        resource = _BasicAuth(resource, users)
    root = Resource()
    parts = [p for p in path.split("/") if p]
    node = root
    for part in parts[:-1]:
        child = Resource()
        node.putChild(part.encode(), child)
        node = child
    node.putChild((parts[-1] if parts else "metrics").encode(), resource)
    site = Site(root)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]  # no access line per scrape
    return site


class _BasicAuth(Resource):
    isLeaf = True

    def __init__(self, resource: Any, users: Any) -> None:
        super().__init__()
        self.resource = resource
        self.users = users

    def render(self, request: Any) -> bytes:
        user = (request.getUser() or b"").decode("utf-8", "surrogateescape")
        password = (request.getPassword() or b"").decode("utf-8", "surrogateescape")
        if not self.users.authenticate(user, password):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Basic realm="gost"')
            return b""
        return self.resource.render(request)  # type: ignore[no-any-return]
