//! A plain WASI program, not a strategy plugin: its component exports `wasi:cli/run` only.

fn main() {
    println!("hi");
}
