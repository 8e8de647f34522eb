//! The Valkey/Redis backing store against a real server (feature `redis`): every page
//! round trips; two stores share a server without meeting; freed slots are deleted; and
//! the failures it claims to survive, each injected on a server of the test's own: the
//! server killed (a failed batch stays in memory, counted), paused with SIGSTOP (the
//! timeout fires, the store stays usable), restarted empty (backed pages are typed
//! errors, the others read back), full (`OOM`), and one whose eviction policy could drop
//! records (refused at open). Without a server binary the tests skip; in CI
//! (`ZPAGE_REQUIRE_ALL`) that is a failure.
#![cfg(feature = "redis")]

mod common;

use common::redis_server::Server;
use common::{assert_holds, insert_all};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zpage::store::{Backing, Selection};
use zpage::{PageStore, RedisBacking, RedisOpenError, RedisOptions, StoreError};

fn server(extra: &[&str]) -> Option<Server> {
    let server = Server::start(extra);
    if server.is_none() {
        common::skip("no valkey-server or redis-server on the PATH");
    }
    server
}

/// A store whose backing store is `server`, with a short timeout.
fn store_on(server: &Server, namespace: &str, pages: usize) -> PageStore {
    let options = RedisOptions::new(pages as u64)
        .namespace(namespace)
        .timeout(Duration::from_millis(500));
    let backing = RedisBacking::open(&server.url(), options).expect("the server is there");
    PageStore::builder().backing(Arc::new(backing)).build()
}

#[test]
fn every_page_round_trips_and_freed_records_are_deleted() {
    let Some(server) = server(&[]) else { return };
    let pages = common::sample_pages();
    let store = store_on(&server, "round-trip", pages.len());
    insert_all(&store, &pages);
    let done = store.writeback(Selection::all()).unwrap();
    let same = store.stats().mm.same_pages;
    assert_eq!(done.written + same, pages.len() as u64, "{done}");
    assert_eq!(store.stats().bd.bd_count, done.written);
    assert_eq!(server.keys(), done.written, "one key per record");
    assert_holds(&store, &pages);
    assert_eq!(store.stats().bd.bd_reads, done.written);
    // Half the pages removed: their records are deleted before the next batch goes out.
    for id in (0..pages.len() as u64).step_by(2) {
        store.remove(id).unwrap();
    }
    store.insert(1_000_000, &pages[1]).unwrap();
    store.writeback(Selection::all()).unwrap();
    assert_eq!(
        server.keys(),
        store.stats().bd.bd_count,
        "the server holds the live pages"
    );
    for (id, page) in (0..).zip(&pages).skip(1).step_by(2) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
    // The store gone, its records go.
    drop(store);
    assert_eq!(server.keys(), 0);
}

#[test]
fn two_stores_share_a_server_without_meeting() {
    let Some(server) = server(&[]) else { return };
    let pages = common::sample_pages();
    let (a, b) = (&pages[..300], &pages[300..600]);
    let first = store_on(&server, "first", 300);
    let second = store_on(&server, "second", 300);
    insert_all(&first, a);
    insert_all(&second, b);
    first.writeback(Selection::all()).unwrap();
    second.writeback(Selection::all()).unwrap();
    // The same slots, under two namespaces.
    assert_holds(&first, a);
    assert_holds(&second, b);
    let second_keys = second.stats().bd.bd_count;
    drop(first);
    assert_eq!(
        server.keys(),
        second_keys,
        "dropping one store leaves the other's records"
    );
    assert_holds(&second, b);
}

#[test]
fn a_killed_server_fails_the_batch_and_loses_nothing_in_memory() {
    let Some(mut server) = server(&[]) else {
        return;
    };
    let pages = common::sample_pages();
    let store = store_on(&server, "killed", pages.len());
    insert_all(&store, &pages);
    let first = store.writeback(Selection::all().max_pages(100)).unwrap();
    assert!(first.written > 0);
    server.kill();
    let done = store.writeback(Selection::all()).unwrap();
    assert!(done.written == 0 && done.failed > 0, "{done}");
    assert!(
        done.error.as_deref().unwrap_or("").contains("127.0.0.1"),
        "{done}"
    );
    assert_eq!(store.stats().io.failed_writes, done.failed);
    // Every page not written back before the kill is still in memory, exactly.
    let mut backed = 0;
    for (id, page) in (0..).zip(&pages) {
        match store.get(id) {
            Ok(found) => assert!(*found.unwrap() == *page, "page {id}"),
            Err(StoreError::BackingRead { source, .. }) => {
                assert!(
                    matches!(
                        source.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                    ),
                    "{source:?}"
                );
                backed += 1;
            }
            Err(e) => panic!("page {id}: {e}"),
        }
    }
    assert_eq!(
        backed, first.written,
        "only the pages on the dead server are out of reach"
    );
}

#[test]
fn a_paused_server_times_out_and_the_store_goes_on() {
    let Some(server) = server(&[]) else { return };
    let pages = common::sample_pages();
    let store = store_on(&server, "paused", pages.len());
    insert_all(&store, &pages[..500]);
    server.pause(true);
    let start = Instant::now();
    let done = store.writeback(Selection::all()).unwrap();
    let waited = start.elapsed();
    assert!(done.failed > 0 && done.written == 0, "{done}");
    assert!(
        waited < Duration::from_secs(5),
        "the 500 ms timeout fired: {waited:?}"
    );
    // Usable meanwhile: inserts and reads of the pages in memory.
    insert_all(&store, &pages);
    assert_holds(&store, &pages);
    server.pause(false);
    let done = store.writeback(Selection::all()).unwrap();
    assert!(done.written > 0 && done.failed == 0, "{done}");
    assert_holds(&store, &pages);
}

#[test]
fn a_server_restarted_empty_makes_backed_pages_typed_errors() {
    let Some(mut server) = server(&[]) else {
        return;
    };
    let pages = common::sample_pages();
    let store = store_on(&server, "restarted", pages.len());
    insert_all(&store, &pages);
    let done = store.writeback(Selection::all().max_pages(200)).unwrap();
    server.restart_empty();
    let mut gone = 0;
    for (id, page) in (0..).zip(&pages) {
        match store.get(id) {
            Ok(found) => assert!(*found.unwrap() == *page, "page {id}"),
            Err(StoreError::BackingRead { source, .. }) => {
                assert_eq!(source.kind(), ErrorKind::NotFound, "{source:?}");
                gone += 1;
            }
            Err(e) => panic!("page {id}: {e}"),
        }
    }
    assert_eq!(gone, done.written);
}

#[test]
fn a_full_server_is_an_out_of_memory_failure() {
    let Some(server) = server(&["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]) else {
        return;
    };
    let pages = common::sample_pages();
    let store = store_on(&server, "full", pages.len());
    insert_all(&store, &pages);
    let done = store.writeback(Selection::all()).unwrap();
    assert!(done.failed > 0, "{done}");
    let backing = RedisBacking::open(&server.url(), RedisOptions::new(4)).unwrap();
    let big = vec![7u8; 4096];
    let records: Vec<(u64, &[u8])> = (0..1024).map(|s| (s, &big[..])).collect();
    let error = backing.write(&records).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OutOfMemory, "{error}");
    assert_holds(&store, &pages);
}

#[test]
fn an_evicting_server_is_refused_and_an_absent_one_is_an_error() {
    let Some(server) = server(&["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    match RedisBacking::open(&server.url(), RedisOptions::new(8)) {
        Err(RedisOpenError::EvictionPolicy { policy, .. }) => assert_eq!(policy, "allkeys-lru"),
        other => panic!("{other:?}"),
    }
    let port = server.port;
    drop(server);
    let error = RedisBacking::open(
        &format!("redis://127.0.0.1:{port}"),
        RedisOptions::new(8).timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert!(matches!(error, RedisOpenError::Server { .. }), "{error}");
    assert!(matches!(
        RedisBacking::open("http://x", RedisOptions::new(1)),
        Err(RedisOpenError::Url { .. })
    ));
}
