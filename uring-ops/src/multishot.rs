//! Multishot operations: accept (plain and direct), receive, receive bundle, read.
