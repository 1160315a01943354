//! Example `tcp_client` (to be written).

fn main() {}
