//! `cobalt-wordcount`: the task program of `cobalt demo`, the Rust port of the tutorial's
//! `python_tutorial_task.py`. It runs on a compute node as the task's own process.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cobalt_demo::wordcount::WordCountArgs::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(cobalt_demo::wordcount::run(args))
}
