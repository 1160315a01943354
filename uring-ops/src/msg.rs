//! Ring messages: `msg_ring` (data and fd passing), fixed-fd install, files update.
