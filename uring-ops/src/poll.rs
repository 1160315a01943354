//! Poll: add (edge and level), remove, update, multishot.
