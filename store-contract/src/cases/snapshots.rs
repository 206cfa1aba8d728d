//! Player snapshots and their per-partition watermark (`gm_ports::SnapshotStore`).

use crate::Fixture;
use gm_ports::{SnapshotStore, StoreError};
use std::collections::HashMap;

pub async fn snapshots_are_saved_with_their_watermark_and_loaded_in_batches<F: Fixture>(f: F) {
    let store = f.store();
    assert_eq!(store.watermark(1).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 0);
    let players: Vec<(String, Vec<u8>)> = (0..1200).map(|i| (format!("g:p{i}"), vec![i as u8; 3])).collect();
    store.save(1, None, 42, players).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), Some(42));
    // A key twice in one save: the last state wins.
    store.save(1, Some(42), 50, vec![("g:p0".into(), vec![8]), ("g:p0".into(), vec![9])]).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), Some(50));
    assert_eq!(store.watermark(2).await.unwrap(), None, "watermarks are per partition");
    assert_eq!(store.count().await.unwrap(), 1200);
    // More keys than one lookup chunk, and one that is missing.
    let keys: Vec<String> = (0..1200).map(|i| format!("g:p{i}")).chain(["missing".to_string()]).collect();
    let loaded: HashMap<String, Vec<u8>> = store.load_many(&keys).await.unwrap().into_iter().collect();
    assert_eq!(loaded.len(), 1200);
    assert_eq!(loaded["g:p0"], vec![9]);
    assert_eq!(loaded["g:p7"], vec![7, 7, 7]);
    assert_eq!(loaded["g:p1199"], vec![(1199 % 256) as u8; 3]);
    assert!(store.load_many(&[]).await.unwrap().is_empty());
    // Another partition's save keeps its own watermark and adds its players.
    store.save(2, None, 7, vec![("h:q".into(), vec![1, 2])]).await.unwrap();
    assert_eq!((store.watermark(1).await.unwrap(), store.watermark(2).await.unwrap()), (Some(50), Some(7)));
    assert_eq!(store.count().await.unwrap(), 1201);
}

pub async fn a_snapshot_save_from_a_stale_watermark_is_refused_and_saves_nothing<F: Fixture>(f: F) {
    let store = f.store();
    store.save(4, None, 10, vec![("g:a".into(), vec![1])]).await.unwrap();
    // A second first save (another process, or a store that lost the row) is refused…
    let err = store.save(4, None, 20, vec![("g:a".into(), vec![2])]).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: None, found: Some(10) }));
    // …and so is a save from a watermark the store no longer holds (it went back in time).
    let err = store.save(4, Some(30), 40, vec![("g:a".into(), vec![3]), ("g:b".into(), vec![4])]).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(30), found: Some(10) }));
    // A first save of a partition that has none is refused when it expects one.
    let err = store.save(5, Some(10), 20, vec![("g:c".into(), vec![5])]).await;
    assert_eq!(err, Err(StoreError::Conflict { expected: Some(10), found: None }));
    assert_eq!(store.watermark(4).await.unwrap(), Some(10));
    assert_eq!(store.watermark(5).await.unwrap(), None);
    let keys = ["g:a".to_string(), "g:b".to_string(), "g:c".to_string()];
    assert_eq!(store.load_many(&keys).await.unwrap(), vec![("g:a".to_string(), vec![1])]);
    assert_eq!(store.count().await.unwrap(), 1);
    // From the stored watermark it moves on.
    store.save(4, Some(10), 40, vec![("g:a".into(), vec![3])]).await.unwrap();
    assert_eq!(store.watermark(4).await.unwrap(), Some(40));
    assert_eq!(store.load_many(&keys[..1]).await.unwrap(), vec![("g:a".to_string(), vec![3])]);
}
