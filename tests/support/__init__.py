"""
The one set of helpers the test modules share (a test module never imports
another test module):

  - L{tests.support.reactor}: keeping the real reactor clean between tests,
    bounded waits;
  - L{tests.support.pki}: a small certificate authority and an isolated
    C{HOME}/working directory;
  - L{tests.support.targets}: echo targets and collecting clients;
  - L{tests.support.cases}: the in-process transport test case and log
    capture;
  - L{tests.support.websocket}: a raw WebSocket peer written from RFC 6455;
  - L{tests.support.fakes}: in-memory transports and UDP sockets;
  - L{tests.support.proxies}: real proxy servers (tinyproxy, microsocks,
    pproxy) on free loopback ports.

Spawning real processes lives in L{tests.processes}; the golden vectors in
L{tests.vectors}.
"""
