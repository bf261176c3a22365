"""
The one set of helpers the test modules share.  A test module never
imports another test module: whatever two modules (or C{bench/}) need
lives here, once.

  - L{tests.support.reactor}: keeping the real reactor clean between tests
    (L{ReactorSettler}), bounded waits, free loopback ports;
  - L{tests.support.logs}: capturing log events and their text;
  - L{tests.support.fakes}: in-memory TCP-like transports that record what
    is written and how they were closed, a recording application protocol;
  - L{tests.support.udp}: the fake UDP socket, the memory reactor that
    binds them, fake UDP sessions;
  - L{tests.support.routes}: a route whose dials wait for the test;
  - L{tests.support.handlers}: building a handler from a GOST command line
    on a memory reactor and driving connections into it;
  - L{tests.support.targets}: echo targets and collecting clients over
    real sockets;
  - L{tests.support.cases}: the in-process integration test case;
  - L{tests.support.lab}: scenarios with real C{gostrelay} children and a
    hand-written relay client;
  - L{tests.support.scenarios}: the reliability scenarios that
    C{tests/test_reliability.py} and C{bench/reliability.py} both run;
  - L{tests.support.pki}: a small certificate authority and an isolated
    C{HOME}/working directory;
  - L{tests.support.websocket}: a raw WebSocket peer written from RFC 6455;
  - L{tests.support.proxies}: real proxy servers (tinyproxy, microsocks,
    pproxy) on free loopback ports.

Spawning real processes lives in L{tests.processes}; the golden vectors in
L{tests.vectors}.
"""
