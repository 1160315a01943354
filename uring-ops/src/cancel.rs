//! Cancellation by user data, fd, opcode, any request, or all matches.
