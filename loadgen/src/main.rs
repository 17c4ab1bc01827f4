//! egressd-loadgen (being written).
fn main() {}
