//! Unit tests: the login guard, session tokens, and request checks.

use std::net::SocketAddr;
use std::sync::Arc;

use cobalt_batch::Batch;
use cobalt_blob::{Engine, EngineConfig};
use cobalt_model::{Accounts, DEV_ACCOUNT_KEY, DEV_BATCH_ACCOUNT, DEV_STORAGE_ACCOUNT};
use http::{HeaderMap, HeaderValue, header};

use crate::auth::{Wanted, is_local};
use crate::{Ui, UiConfig, UiError, guard};

fn ui() -> (Ui, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = cobalt_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut batch_accounts = Accounts::dev_batch();
    batch_accounts
        .extend_from_spec(&format!("otherbatch:{DEV_ACCOUNT_KEY}"))
        .unwrap();
    let names: Vec<String> = batch_accounts.names().map(str::to_owned).collect();
    let batch = Batch::new(Arc::new(store), &names).unwrap();
    let engine = Engine::open(&dir.path().join("blob"), EngineConfig::default()).unwrap();
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let ui = Ui::new(UiConfig {
        batch: Arc::new(batch),
        batch_accounts,
        files: None,
        engine: Arc::new(engine),
        storage_accounts: Accounts::dev_storage(),
        default_storage: DEV_STORAGE_ACCOUNT.to_owned(),
        stop,
    });
    (ui, dir)
}

fn headers(host: &str, cookie: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
    if let Some(c) = cookie {
        h.insert(header::COOKIE, HeaderValue::from_str(c).unwrap());
    }
    h
}

fn peer(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn only_loopback_peers_naming_a_loopback_host_are_local() {
    let check = |p: Option<SocketAddr>, host: &str, want: bool| {
        assert_eq!(is_local(p, &headers(host, None)), want, "{p:?} {host}");
    };
    check(peer("127.0.0.1:5000"), "127.0.0.1:10100", true);
    check(peer("127.0.0.1:5000"), "localhost:10100", true);
    check(peer("127.0.0.1:5000"), "localhost", true);
    check(peer("[::1]:5000"), "[::1]:10100", true);
    check(peer("[::ffff:127.0.0.1]:5000"), "127.0.0.1", true);
    check(peer("10.1.2.3:5000"), "127.0.0.1:10100", false);
    check(peer("192.168.0.9:5000"), "localhost", false);
    // DNS rebinding: a page from evil.example resolved to 127.0.0.1.
    check(peer("127.0.0.1:5000"), "evil.example:10100", false);
    check(None, "127.0.0.1", false);
}

#[test]
fn a_remote_request_without_a_session_is_refused() {
    let (ui, _d) = ui();
    let e = guard(
        &ui,
        peer("10.0.0.7:4000"),
        &headers("batch.example:10100", None),
        &Wanted::default(),
    )
    .unwrap_err();
    assert!(matches!(e, UiError::Unauthorized(_)), "{e:?}");
    assert_eq!(e.status_code().0, http::StatusCode::UNAUTHORIZED);
}

#[test]
fn loopback_requests_default_to_the_first_account_and_may_switch() {
    let (ui, _d) = ui();
    let h = headers("127.0.0.1:10100", None);
    let p = guard(&ui, peer("127.0.0.1:1"), &h, &Wanted::default()).unwrap();
    assert!(p.local);
    assert_eq!(p.batch, DEV_BATCH_ACCOUNT);
    assert_eq!(p.storage.as_deref(), Some(DEV_STORAGE_ACCOUNT));
    let other = Wanted {
        account: Some("otherbatch".into()),
        storage: None,
    };
    assert_eq!(
        guard(&ui, peer("127.0.0.1:1"), &h, &other).unwrap().batch,
        "otherbatch"
    );
    let unknown = Wanted {
        account: Some("nobody".into()),
        storage: None,
    };
    let e = guard(&ui, peer("127.0.0.1:1"), &h, &unknown).unwrap_err();
    assert!(matches!(e, UiError::NotFound(_)));
}

#[test]
fn a_signed_session_admits_its_account_only() {
    let (ui, _d) = ui();
    let far = peer("10.0.0.7:4000");
    let expires = super::auth::tests_now() + 600;
    let token = ui.session_token(DEV_BATCH_ACCOUNT, None, expires);
    let cookie = format!("theme=dark; cobalt_ui={token}");
    let h = headers("batch.example", Some(&cookie));
    let p = guard(&ui, far, &h, &Wanted::default()).unwrap();
    assert!(!p.local);
    assert_eq!(p.batch, DEV_BATCH_ACCOUNT);
    assert_eq!(p.storage, None);
    // Another account than the session's.
    let other = Wanted {
        account: Some("otherbatch".into()),
        storage: None,
    };
    assert!(guard(&ui, far, &h, &other).is_err());
    // Tampered: the account name changed under the same signature.
    let forged = token.replacen(DEV_BATCH_ACCOUNT, "otherbatch", 1);
    let h2 = headers("batch.example", Some(&format!("cobalt_ui={forged}")));
    assert!(guard(&ui, far, &h2, &Wanted::default()).is_err());
    // Expired.
    let old = ui.session_token(DEV_BATCH_ACCOUNT, None, super::auth::tests_now() - 1);
    let h3 = headers("batch.example", Some(&format!("cobalt_ui={old}")));
    assert!(guard(&ui, far, &h3, &Wanted::default()).is_err());
    // Signed by another process.
    let (ui2, _d2) = super::tests::ui();
    assert!(guard(&ui2, far, &h, &Wanted::default()).is_err());
}

#[test]
fn file_paths_stay_inside_their_directory() {
    use crate::batch::relative_path;
    assert_eq!(relative_path("stdout.txt").unwrap(), "stdout.txt");
    assert_eq!(relative_path("/wd/out/a.txt").unwrap(), "wd/out/a.txt");
    for bad in ["", "../x", "wd/../../etc/passwd", "./x", "a\\b"] {
        assert!(relative_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn task_state_filters_are_checked() {
    use crate::batch::task_state;
    assert_eq!(task_state(None).unwrap(), None);
    assert_eq!(task_state(Some("")).unwrap(), None);
    assert_eq!(
        task_state(Some("running")).unwrap().as_deref(),
        Some("running")
    );
    assert!(task_state(Some("bogus")).is_err());
}

#[test]
fn download_names_are_safe() {
    use crate::storage::download_name;
    assert_eq!(download_name("a/b/report.txt"), "report.txt");
    assert_eq!(download_name("we\"ird;name.txt"), "we_ird_name.txt");
    assert_eq!(download_name("dir/"), "blob");
}

#[test]
fn every_asset_is_embedded_and_the_page_loads_the_app() {
    let index = include_str!("../assets/index.html");
    assert!(index.contains("/ui/assets/app.js"));
    for (name, _, body) in crate::static_files::ASSETS {
        assert!(!body.is_empty(), "{name}");
        // No CDN: nothing is fetched from another origin.
        assert!(
            !body.contains("https://"),
            "{name} refers to another origin"
        );
    }
}
