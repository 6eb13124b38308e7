//! The physical baseline of the node benchmark (bench/node_bench.py): spawn N processes from
//! T threads, each in its own directory with a `wd/` and its own stdout/stderr files, as a
//! node agent does, and print the rate. Usage: `spawn_baseline DIR N THREADS [PROGRAM]`.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || std::io::Error::other("usage: spawn_baseline DIR N THREADS [PROGRAM]");
    let root = PathBuf::from(args.get(1).ok_or_else(usage)?);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let threads: usize = args.get(3).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let program = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "/bin/true".to_owned());
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (root, program) = (&root, &program);
            s.spawn(move || -> std::io::Result<()> {
                for i in (t..n).step_by(threads) {
                    let dir = root.join(format!("task{i}"));
                    let wd = dir.join("wd");
                    fs::create_dir_all(&wd)?;
                    let out = File::create(dir.join("stdout.txt"))?;
                    let err = File::create(dir.join("stderr.txt"))?;
                    Command::new(program)
                        .current_dir(&wd)
                        .stdin(Stdio::null())
                        .stdout(out)
                        .stderr(err)
                        .status()?;
                }
                Ok(())
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"processes\": {n}, \"seconds\": {secs:.3}, \"rate\": {:.1}}}",
        n as f64 / secs
    );
    Ok(())
}
