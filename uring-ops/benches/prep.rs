//! Prepare-function cost against the `io-uring` crate's builders (to be written).

fn main() {}
