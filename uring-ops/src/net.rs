//! Socket I/O: `recv`, `send` (and `sendto`), `recvmsg`, `sendmsg`, bundle receive, zero-copy `send` and `sendmsg`, and multicast (one payload to several destinations, plain and zero-copy).
