//! `cargo bench -p cobalt-md5`: this crate's MD5 against the `md-5` crate on the same 64 MiB,
//! alternating, best of five rounds each.

use std::time::Instant;

use cobalt_md5::Digest;

const MIB: usize = 1 << 20;

fn main() {
    let data: Vec<u8> = (0..64 * MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        ours = ours.min(time(|| cobalt_md5::Md5::digest(&data).into()));
        theirs = theirs.min(time(|| md5::Md5::digest(&data).into()));
    }
    let speed = |secs: f64| data.len() as f64 / MIB as f64 / secs;
    println!("cobalt-md5: {:.0} MiB/s", speed(ours));
    println!("md-5:       {:.0} MiB/s", speed(theirs));
    println!("ratio:      {:.2}x", theirs / ours);
}

fn time(hash: impl Fn() -> [u8; 16]) -> f64 {
    let start = Instant::now();
    std::hint::black_box(hash());
    start.elapsed().as_secs_f64()
}
