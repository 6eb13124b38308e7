//! The demo's task program (`cobalt-wordcount`), a port of the tutorial's
//! `python_tutorial_task.py`: count the top N words of a text file, write them to
//! `<name>_OUTPUT<ext>`, upload that file to a container with the container's SAS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use cobalt_client::blob::{ContainerClient, TransferOptions};

/// Counts the top N words of a text file and uploads the result to a blob container.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct WordCountArgs {
    /// The text file to process.
    #[arg(long)]
    pub filepath: PathBuf,
    /// How many of the most common words to write.
    #[arg(long)]
    pub numwords: usize,
    /// The storage account that owns the container.
    #[arg(long)]
    pub storageaccount: String,
    /// The container to upload the result to.
    #[arg(long)]
    pub storagecontainer: String,
    /// A SAS token with write access to the container.
    #[arg(long)]
    pub sastoken: String,
    /// The account's Blob endpoint; the tutorial's is Azure's, `https://{account}.blob.core.windows.net`.
    #[arg(long, env = "COBALT_BLOB_ENDPOINT")]
    pub blob_endpoint: Option<String>,
}

/// The `n` most common words of `text`, most common first; ties keep the order of first
/// appearance. Words are split on whitespace and stripped of ASCII punctuation at both ends,
/// exactly as the Python task does (`word.strip(string.punctuation)`, `Counter.most_common`).
pub fn top_words(text: &str, n: usize) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (order, word) in text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .enumerate()
    {
        counts.entry(word).or_insert((0, order)).0 += 1;
    }
    let mut ranked: Vec<(&str, (usize, usize))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    ranked
        .into_iter()
        .take(n)
        .map(|(w, (count, _))| (w.to_owned(), count))
        .collect()
}

/// `taskdata1.txt` → `taskdata1_OUTPUT.txt` (the path as given, like the Python task).
pub fn output_name(filepath: &Path) -> PathBuf {
    let stem = filepath.file_stem().unwrap_or_default().to_string_lossy();
    let name = match filepath.extension() {
        Some(ext) => format!("{stem}_OUTPUT.{}", ext.to_string_lossy()),
        None => format!("{stem}_OUTPUT"),
    };
    filepath.with_file_name(name)
}

/// The report the task writes: where it ran, then `word: count` lines.
pub fn report(words: &[(String, usize)], env: impl Fn(&str) -> String) -> String {
    let mut out = String::from("------------------------------\n");
    for (label, var) in [
        ("Node: ", "AZ_BATCH_NODE_ID"),
        ("Task: ", "AZ_BATCH_TASK_ID"),
        ("Job:  ", "AZ_BATCH_JOB_ID"),
        ("Pool: ", "AZ_BATCH_POOL_ID"),
    ] {
        out.push_str(label);
        out.push_str(&env(var));
        out.push('\n');
    }
    out.push_str("------------------------------\n");
    for (word, count) in words {
        out.push_str(&format!("{word}: {count}\n"));
    }
    out
}

/// Runs the task program.
pub async fn run(args: WordCountArgs) -> anyhow::Result<()> {
    let text = tokio::fs::read_to_string(&args.filepath)
        .await
        .with_context(|| format!("reading {}", args.filepath.display()))?;
    let words = top_words(&text, args.numwords);
    let output = output_name(&args.filepath);
    let body = report(&words, |var| std::env::var(var).unwrap_or_default());
    tokio::fs::write(&output, body)
        .await
        .with_context(|| format!("writing {}", output.display()))?;

    let endpoint = args
        .blob_endpoint
        .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", args.storageaccount));
    let container_url = format!(
        "{}/{}?{}",
        endpoint.trim_end_matches('/'),
        args.storagecontainer,
        args.sastoken.trim_start_matches('?')
    );
    let container = ContainerClient::from_sas_url(&container_url)?;
    let blob_name = output.to_string_lossy().into_owned();
    println!(
        "Uploading file {} to container [{}]...",
        std::fs::canonicalize(&output)
            .unwrap_or(output.clone())
            .display(),
        args.storagecontainer
    );
    container
        .blob_client(&blob_name)
        .upload_file(&output, &TransferOptions::default(), &|_| {})
        .await
        .with_context(|| format!("uploading {blob_name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_python() {
        let words = top_words("the cat, the dog. The \"cat\"! a -- a the", 3);
        assert_eq!(
            words,
            [("the".into(), 3), ("cat".into(), 2), ("a".into(), 2)]
        );
        // "--" strips to "", which Python counts as a word too.
        assert_eq!(top_words("-- --", 1), [(String::new(), 2)]);
    }

    #[test]
    fn output_names() {
        assert_eq!(
            output_name(Path::new("taskdata1.txt")),
            Path::new("taskdata1_OUTPUT.txt")
        );
        assert_eq!(output_name(Path::new("a/b")), Path::new("a/b_OUTPUT"));
    }

    #[test]
    fn report_layout() {
        let r = report(&[("x".into(), 2)], |v| v.to_lowercase());
        assert!(r.starts_with("------------------------------\nNode: az_batch_node_id\n"));
        assert!(r.ends_with("------------------------------\nx: 2\n"));
    }
}
