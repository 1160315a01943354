//! Echo throughput (placeholder).

fn main() {}
