//! Engine tests: preconditions, listing with prefixes and markers, block lists, ETags.

use super::*;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    engine
        .create_container("acct", "cont", &Metadata::new(), None)
        .unwrap();
    (dir, engine)
}

fn inline(data: &[u8]) -> Staged {
    Staged {
        len: data.len() as u64,
        md5: None,
        content: StagedContent::Inline(Bytes::copy_from_slice(data)),
    }
}

fn put(engine: &Engine, name: &str, data: &[u8]) -> BlobProps {
    engine
        .put_blob(
            "acct",
            "cont",
            name,
            BlobType::Block,
            inline(data),
            &ContentHeaders::default(),
            &Metadata::new(),
            &Conditions::default(),
            false,
        )
        .unwrap()
}

fn page(
    engine: &Engine,
    prefix: &str,
    delimiter: Option<&str>,
    marker: &str,
    max: usize,
) -> (Vec<String>, Option<String>) {
    let (items, next) = engine
        .list_blobs("acct", "cont", prefix, delimiter, marker, max)
        .unwrap();
    let names = items
        .into_iter()
        .map(|i| match i {
            ListItem::Blob(b) => b.name,
            ListItem::Prefix(p) => format!("[{p}]"),
        })
        .collect();
    (names, next)
}

/// Follows markers to the end, returning every page.
fn all_pages(
    engine: &Engine,
    prefix: &str,
    delimiter: Option<&str>,
    max: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut marker = String::new();
    loop {
        let (names, next) = page(engine, prefix, delimiter, &marker, max);
        pages.push(names);
        match next {
            Some(m) => marker = m,
            None => return pages,
        }
    }
}

#[test]
fn listing_rolls_up_prefixes_across_pages() {
    let (_dir, e) = engine();
    for name in ["a/1", "a/2", "a/3/x", "b", "c/x/y", "c/z", "d"] {
        put(&e, name, b"x");
    }
    assert_eq!(
        all_pages(&e, "", Some("/"), 2),
        vec![vec!["[a/]", "b"], vec!["[c/]", "d"]]
    );
    assert_eq!(
        all_pages(&e, "", Some("/"), 1),
        vec![vec!["[a/]"], vec!["b"], vec!["[c/]"], vec!["d"]]
    );
    assert_eq!(
        all_pages(&e, "a/", Some("/"), 5),
        vec![vec!["a/1", "a/2", "[a/3/]"]]
    );
    assert_eq!(
        all_pages(&e, "c", None, 1),
        vec![vec!["c/x/y"], vec!["c/z"]]
    );
    assert_eq!(
        all_pages(&e, "", None, 3).concat(),
        vec!["a/1", "a/2", "a/3/x", "b", "c/x/y", "c/z", "d"]
    );
    assert_eq!(
        all_pages(&e, "zzz", Some("/"), 3),
        vec![Vec::<String>::new()]
    );
}

#[test]
fn containers_page_by_name() {
    let (_dir, e) = engine();
    for name in ["alpha", "beta", "betamax", "gamma"] {
        e.create_container("acct", name, &Metadata::new(), None)
            .unwrap();
    }
    let names = |(list, next): (Vec<Container>, Option<String>)| {
        (list.into_iter().map(|c| c.name).collect::<Vec<_>>(), next)
    };
    assert_eq!(
        names(e.list_containers("acct", "beta", "", 10).unwrap()),
        (vec!["beta".into(), "betamax".into()], None)
    );
    assert_eq!(
        names(e.list_containers("acct", "", "", 2).unwrap()),
        (vec!["alpha".into(), "beta".into()], Some("betamax".into()))
    );
    assert_eq!(
        names(e.list_containers("acct", "", "betamax", 2).unwrap()),
        (vec!["betamax".into(), "cont".into()], Some("gamma".into()))
    );
    assert!(matches!(
        e.create_container("acct", "alpha", &Metadata::new(), None),
        Err(EngineError::ContainerAlreadyExists)
    ));
    // Accounts do not see each other's containers.
    assert!(e.list_containers("other", "", "", 10).unwrap().0.is_empty());
}

#[test]
fn write_conditions() {
    let c = |m: Option<&str>, n: Option<&str>, ms: Option<i64>, us: Option<i64>| Conditions {
        if_match: m.map(Into::into),
        if_none_match: n.map(Into::into),
        if_modified_since: ms,
        if_unmodified_since: us,
    };
    let cur = Some(("0xA", 100));
    assert!(c(None, None, None, None).check_write(cur).is_ok());
    assert!(
        c(Some("\"0xA\""), None, None, None)
            .check_write(cur)
            .is_ok()
    );
    assert!(matches!(
        c(Some("\"0xB\""), None, None, None).check_write(cur),
        Err(EngineError::ConditionNotMet)
    ));
    assert!(matches!(
        c(None, Some("*"), None, None).check_write(cur),
        Err(EngineError::BlobAlreadyExists)
    ));
    assert!(c(None, Some("*"), None, None).check_write(None).is_ok());
    assert!(matches!(
        c(Some("*"), None, None, None).check_write(None),
        Err(EngineError::ConditionNotMet)
    ));
    assert!(matches!(
        c(None, Some("\"0xA\""), None, None).check_write(cur),
        Err(EngineError::ConditionNotMet)
    ));
    assert!(c(None, None, Some(99), None).check_write(cur).is_ok());
    assert!(matches!(
        c(None, None, Some(100), None).check_write(cur),
        Err(EngineError::ConditionNotMet)
    ));
    assert!(c(None, None, None, Some(100)).check_write(cur).is_ok());
    assert!(matches!(
        c(None, None, None, Some(99)).check_write(cur),
        Err(EngineError::ConditionNotMet)
    ));
}

#[test]
fn read_conditions() {
    let c = |m: Option<&str>, n: Option<&str>| Conditions {
        if_match: m.map(Into::into),
        if_none_match: n.map(Into::into),
        ..Default::default()
    };
    assert!(
        c(Some("\"0xA\", \"0xB\""), None)
            .check_read("0xB", 1)
            .is_ok()
    );
    assert!(matches!(
        c(Some("\"0xC\""), None).check_read("0xB", 1),
        Err(EngineError::ConditionNotMet)
    ));
    assert!(matches!(
        c(None, Some("\"0xB\"")).check_read("0xB", 1),
        Err(EngineError::NotModified)
    ));
    assert!(matches!(
        c(None, Some("W/\"0xB\"")).check_read("0xB", 1),
        Err(EngineError::NotModified)
    ));
    let since = Conditions {
        if_modified_since: Some(5),
        ..Default::default()
    };
    assert!(matches!(
        since.check_read("0xB", 5),
        Err(EngineError::NotModified)
    ));
    assert!(since.check_read("0xB", 6).is_ok());
}

#[test]
fn etags_are_unique_and_increasing() {
    let (_dir, e) = engine();
    let tags: Vec<String> = (0..1000).map(|_| e.next_etag()).collect();
    let values: Vec<u64> = tags
        .iter()
        .map(|t| u64::from_str_radix(&t[2..], 16).unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]));
    assert!(tags.iter().all(|t| t.starts_with("0x")));
}

#[test]
fn overwrite_replaces_content_and_keeps_creation_time() {
    let (_dir, e) = engine();
    let first = put(&e, "b", b"one");
    let second = put(&e, "b", b"second");
    assert_ne!(first.etag, second.etag);
    assert_eq!(first.created, second.created);
    let (props, reader) = e
        .open_blob("acct", "cont", "b", |p| Ok(Some((0, p.size - 1))))
        .unwrap();
    assert_eq!(props.size, 6);
    assert_eq!(reader.as_inline().unwrap().as_ref(), b"second");
    e.delete_blob("acct", "cont", "b", &Conditions::default())
        .unwrap();
    assert!(matches!(
        e.blob("acct", "cont", "b"),
        Err(EngineError::BlobNotFound)
    ));
    assert!(matches!(
        e.delete_blob("acct", "cont", "b", &Conditions::default()),
        Err(EngineError::BlobNotFound)
    ));
}

#[test]
fn reopening_removes_unreferenced_extents() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path(), EngineConfig::default()).unwrap();
        let (file, guard) = e.extents.create().unwrap();
        drop(file);
        // Simulate a crash between writing an extent and committing its metadata.
        std::mem::forget(guard);
        assert_eq!(e.extents.list().unwrap().len(), 1);
    }
    let e = Engine::open(dir.path(), EngineConfig::default()).unwrap();
    assert!(e.extents.list().unwrap().is_empty());
}

#[test]
fn deleting_inline_blobs_gives_pages_back() {
    let (_dir, e) = engine();
    let pages = |e: &Engine| -> i64 {
        e.db.read(|c| Ok(c.pragma_query_value(None, "page_count", |r| r.get(0))?))
            .unwrap()
    };
    let auto: i64 =
        e.db.read(|c| Ok(c.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?))
            .unwrap();
    assert_eq!(auto, 2, "incremental auto_vacuum");
    let empty = pages(&e);
    for i in 0..100 {
        put(&e, &format!("b{i}"), &vec![i as u8; 60 * 1024]);
    }
    let full = pages(&e);
    assert!(full > empty + 1000, "{empty} -> {full}");
    e.delete_container("acct", "cont", &Conditions::default())
        .unwrap();
    let after = pages(&e);
    assert!(after < empty + 50, "{empty} -> {full} -> {after}");
}

/// Stages `data` as one block, through an extent file as Put Block does.
async fn stage_block(engine: &Engine, id: &[u8], data: &[u8]) {
    let chunks: Vec<std::result::Result<Bytes, io::Error>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let staged = engine
        .stage(
            futures_util::stream::iter(chunks),
            data.len() as u64,
            BodyKind::Block,
            false,
        )
        .await
        .unwrap();
    engine
        .stage_block("acct", "cont", "big", id, staged)
        .unwrap();
}

/// Commits blob `big` from the staged blocks `ids`, in order.
fn commit_big(engine: &Engine, ids: &[Vec<u8>]) {
    let list: Vec<_> = ids
        .iter()
        .map(|id| (BlockListKind::Latest, id.clone()))
        .collect();
    engine
        .commit_block_list(
            "acct",
            "cont",
            "big",
            &list,
            &ContentHeaders::default(),
            &Metadata::new(),
            &Conditions::default(),
            false,
        )
        .unwrap();
}

async fn read(engine: &Engine, range: Option<(u64, u64)>) -> Vec<u8> {
    let (_, reader) = engine
        .open_blob("acct", "cont", "big", |_| Ok(range))
        .unwrap();
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(reader.into_stream());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(
            chunk.len() as u64 <= READ_CHUNK,
            "a chunk larger than READ_CHUNK"
        );
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cross_chunk_and_block_boundaries_in_order() {
    let (_dir, engine) = engine();
    let chunk = READ_CHUNK as usize;
    // Block sizes around the read chunk, so reads end mid-block and blocks end mid-chunk.
    let sizes = [chunk + 1, 7, 2 * chunk - 3, chunk];
    let mut content = Vec::new();
    let mut ids = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7) as u8).collect();
        let id = format!("block-{i}").into_bytes();
        stage_block(&engine, &id, &data).await;
        content.extend_from_slice(&data);
        ids.push(id);
    }
    commit_big(&engine, &ids);
    let total = content.len() as u64;
    assert_eq!(read(&engine, Some((0, total - 1))).await, content);
    for (from, to) in [
        (0, 0),
        (1, READ_CHUNK),
        (READ_CHUNK - 2, READ_CHUNK + 9),
        (READ_CHUNK + 3, 3 * READ_CHUNK),
        (total - 5, total - 1),
    ] {
        assert_eq!(
            read(&engine, Some((from, to))).await,
            &content[from as usize..=to as usize],
            "range {from}-{to}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_fails_ends_the_stream_with_the_error() {
    let (_dir, engine) = engine();
    let data = vec![7u8; 3 * READ_CHUNK as usize];
    stage_block(&engine, b"only", &data).await;
    commit_big(&engine, &[b"only".to_vec()]);
    // Damage the stored bytes behind the engine's back: the extent loses its tail.
    let ids = engine.extents.list().unwrap();
    assert_eq!(ids.len(), 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(engine.extents.path(ids[0]))
        .unwrap()
        .set_len(READ_CHUNK + 10)
        .unwrap();
    let (_, reader) = engine
        .open_blob("acct", "cont", "big", |_| {
            Ok(Some((0, data.len() as u64 - 1)))
        })
        .unwrap();
    let mut stream = std::pin::pin!(reader.into_stream());
    assert_eq!(
        stream.next().await.unwrap().unwrap().len() as u64,
        READ_CHUNK
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(stream.next().await.is_none(), "nothing after the error");
}
