//! The `swarmer` binary: command-line parsing and terminal output around the `swarmer` library.

fn main() {}
