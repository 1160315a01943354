//! Socket creation and connection setup: `socket` (TCP, UDP, UDP-Lite, SCTP, Unix, raw; plain and direct), `bind`, `listen`, `accept` (plain and direct), `connect`, `shutdown`.
