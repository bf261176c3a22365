"""KCP transport stack (kcp-go compatible), sans-IO: ARQ, crypt, FEC and snappy framing."""
