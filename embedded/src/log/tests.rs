use super::*;
use gm_ports::Polled;
use std::collections::BTreeMap;
use std::time::Duration;

fn spec(name: &str, partitions: u32) -> TopicSpec {
    TopicSpec { name: name.into(), partitions, compacted: false }
}

fn rec(key: &str, payload: &str) -> NewRecord {
    NewRecord::new(key, payload.as_bytes().to_vec())
}

async fn open(dir: &tempfile::TempDir) -> SqliteLog {
    SqliteLog::open(&dir.path().join("log.db"), &[spec("in", 3), spec("out", 2)]).await.unwrap()
}

/// Polls until `n` records arrived (assignment and idle polls are skipped).
async fn collect(c: &mut dyn LogConsumer, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} records arrived", out.len());
        if let Polled::Records(r) = c.poll(n - out.len(), Duration::from_millis(200)).await.unwrap() {
            out.extend(r);
        }
    }
    out
}

#[tokio::test]
async fn appends_get_dense_offsets_per_partition_and_keys_map_to_partition_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    let mut expected_next: BTreeMap<u32, u64> = BTreeMap::new();
    for round in 0..3 {
        let records: Vec<NewRecord> = (0..40).map(|i| rec(&format!("game:p{i}"), &format!("{round}-{i}"))).collect();
        let positions = log.append("in", records.clone()).await.unwrap();
        assert_eq!(positions.len(), records.len());
        for (r, pos) in records.iter().zip(&positions) {
            assert_eq!(pos.partition, partition_for(&r.key, 3), "key {}", r.key);
            let next = expected_next.entry(pos.partition).or_insert(0);
            assert_eq!(pos.offset, *next, "offsets must be dense and in input order");
            *next += 1;
        }
    }
    let ends = log.end_offsets("in").await.unwrap();
    assert_eq!(ends, (0..3).map(|p| expected_next.get(&p).copied().unwrap_or(0)).collect::<Vec<_>>());
    assert_eq!(ends.iter().sum::<u64>(), 120);
    let p0 = log.read("in", 0, 0, 1000).await.unwrap();
    assert_eq!(p0.len() as u64, ends[0]);
    assert!(p0.iter().enumerate().all(|(i, r)| r.offset == i as u64 && partition_for(&r.key, 3) == 0));
    assert!(matches!(log.append("nope", vec![rec("k", "v")]).await, Err(LogError::UnknownTopic(_))));
}

#[tokio::test]
async fn consumer_reads_in_offset_order_and_resumes_from_committed_offset_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    let records: Vec<NewRecord> = (0..60).map(|i| rec(&format!("k{}", i % 7), &i.to_string())).collect();
    log.append("in", records).await.unwrap();

    let mut c = log.consumer("g", "in").await.unwrap();
    assert_eq!(c.poll(10, Duration::from_millis(100)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
    let got = collect(c.as_mut(), 60).await;
    // Per partition: offsets 0,1,2,... in order, payloads in append order.
    let mut by_partition: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for r in &got {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for recs in by_partition.values() {
        assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
        let payloads: Vec<u32> = recs.iter().map(|r| String::from_utf8_lossy(&r.payload).parse().unwrap()).collect();
        assert!(payloads.windows(2).all(|w| w[0] < w[1]));
    }
    // Commit half of each partition, then close and reopen.
    let commits: Vec<Position> =
        by_partition.iter().map(|(p, recs)| Position { partition: *p, offset: recs.len() as u64 / 2 }).collect();
    c.commit(&commits).await.unwrap();
    drop(c);
    log.close().await;
    drop(log);

    let log = open(&dir).await;
    let mut c = log.consumer("g", "in").await.unwrap();
    for pos in &commits {
        assert_eq!(c.committed(pos.partition).await.unwrap(), Some(pos.offset));
    }
    assert!(matches!(c.poll(10, Duration::from_millis(100)).await.unwrap(), Polled::Assigned(_)));
    let remaining: usize = by_partition.values().map(|r| r.len() - r.len() / 2).sum();
    let got = collect(c.as_mut(), remaining).await;
    for pos in &commits {
        let first = got.iter().filter(|r| r.partition == pos.partition).map(|r| r.offset).min();
        assert_eq!(first, Some(pos.offset), "partition {} resumes at its committed offset", pos.partition);
    }
    assert_eq!(c.poll(10, Duration::from_millis(50)).await.unwrap(), Polled::Idle);
}

#[tokio::test]
async fn poll_wakes_up_on_a_new_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    let mut c = log.consumer("g", "in").await.unwrap();
    assert!(matches!(c.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
    let producer = log.producer();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer.append("in", vec![rec("a", "1")]).await.unwrap();
    });
    let started = std::time::Instant::now();
    let polled = c.poll(10, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(polled, Polled::Records(ref r) if r.len() == 1), "{polled:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    writer.await.unwrap();
}

#[tokio::test]
async fn headers_are_stored_and_one_commit_writes_several_topics() {
    let dir = tempfile::tempdir().unwrap();
    let topics = [
        TopicSpec { name: "in".into(), partitions: 1, compacted: false },
        TopicSpec { name: "out".into(), partitions: 1, compacted: false },
        TopicSpec { name: "dlq".into(), partitions: 1, compacted: false },
    ];
    let log = SqliteLog::open(&dir.path().join("log.db"), &topics).await.unwrap();
    log.append("in", vec![rec("k", "a").with_header("h", "v"), rec("k", "b")]).await.unwrap();
    let read = log.read("in", 0, 0, 10).await.unwrap();
    assert_eq!(read[0].headers, vec![("h".to_string(), "v".to_string())]);
    assert!(read[1].headers.is_empty());
    let mut c = log.sqlite_consumer("g", "in").await.unwrap();
    let outputs = vec![
        ("out".to_string(), vec![rec("k", "x")]),
        ("dlq".to_string(), vec![rec("k", "y").with_header("gm.error", "boom")]),
    ];
    c.commit_with_outputs_to(outputs, &[Position { partition: 0, offset: 2 }]).await.unwrap();
    assert_eq!(c.committed(0).await.unwrap(), Some(2));
    assert_eq!(log.read("out", 0, 0, 10).await.unwrap().len(), 1);
    let dlq = log.read("dlq", 0, 0, 10).await.unwrap();
    assert_eq!(dlq[0].header("gm.error"), Some("boom"));
    // An unknown output topic fails the whole unit: nothing written, nothing committed.
    let bad = vec![("out".to_string(), vec![rec("k", "z")]), ("nope".to_string(), vec![rec("k", "w")])];
    assert!(c.commit_with_outputs_to(bad, &[Position { partition: 0, offset: 2 }]).await.is_err());
    assert_eq!(log.read("out", 0, 0, 10).await.unwrap().len(), 1);
    log.close().await;
}

#[tokio::test]
async fn commit_with_outputs_is_atomic_and_a_stale_commit_is_fenced_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append("in", (0..10).map(|i| rec("same-key", &i.to_string())).collect()).await.unwrap();
    let p = partition_for("same-key", 3);

    let mut a = log.consumer("g", "in").await.unwrap();
    assert!(matches!(a.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
    let got = collect(a.as_mut(), 10).await;
    assert_eq!(got.len(), 10);
    a.commit_with_outputs("out", vec![rec("o1", "x"), rec("o2", "y")], &[Position { partition: p, offset: 4 }])
        .await
        .unwrap();
    assert_eq!(a.committed(p).await.unwrap(), Some(4));
    assert_eq!(log.end_offsets("out").await.unwrap().iter().sum::<u64>(), 2);

    // Another process (a second handle on the same file) commits in between.
    let other = open(&dir).await;
    let mut b = other.consumer("g", "in").await.unwrap();
    b.commit(&[Position { partition: p, offset: 7 }]).await.unwrap();

    let stale = a.commit_with_outputs("out", vec![rec("o3", "z")], &[Position { partition: p, offset: 10 }]).await;
    assert!(matches!(stale, Err(LogError::Fenced(_))), "{stale:?}");
    assert_eq!(log.end_offsets("out").await.unwrap().iter().sum::<u64>(), 2, "no output written");
    assert_eq!(a.committed(p).await.unwrap(), Some(7), "offset unchanged");
    // b, which saw the stored value, may go on.
    b.commit_with_outputs("out", vec![rec("o3", "z")], &[Position { partition: p, offset: 10 }]).await.unwrap();
    assert_eq!(other.end_offsets("out").await.unwrap().iter().sum::<u64>(), 3);
    assert_eq!(b.committed(p).await.unwrap(), Some(10));
}

#[tokio::test]
async fn a_second_consumer_of_the_same_group_revokes_the_first_and_fences_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append("in", vec![rec("k", "1")]).await.unwrap();
    let mut first = log.consumer("g", "in").await.unwrap();
    assert_eq!(first.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
    assert_eq!(collect(first.as_mut(), 1).await.len(), 1);

    let mut second = log.consumer("g", "in").await.unwrap();
    assert_eq!(first.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Revoked(vec![0, 1, 2]));
    assert_eq!(second.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(vec![0, 1, 2]));
    let p = partition_for("k", 3);
    let zombie = first.commit(&[Position { partition: p, offset: 1 }]).await;
    assert!(matches!(zombie, Err(LogError::Fenced(_))), "{zombie:?}");
    assert_eq!(second.committed(p).await.unwrap(), None);
    // The new member reads from the (absent) committed offset, i.e. from 0.
    assert_eq!(collect(second.as_mut(), 1).await[0].offset, 0);
    second.commit(&[Position { partition: p, offset: 1 }]).await.unwrap();
    // Another group is independent.
    let mut other = log.consumer("h", "in").await.unwrap();
    assert!(matches!(other.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
    assert_eq!(second.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Idle);
}

#[tokio::test]
async fn poll_is_fair_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    // 100 records on each partition.
    let mut keys: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let k = format!("k{i}");
        keys.entry(partition_for(&k, 3)).or_default().push(k);
        if keys.values().all(|v| v.len() >= 100) && keys.len() == 3 {
            break;
        }
    }
    for ks in keys.values() {
        log.append("in", ks.iter().take(100).map(|k| rec(k, "v")).collect()).await.unwrap();
    }
    let mut c = log.consumer("g", "in").await.unwrap();
    assert!(matches!(c.poll(30, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
    let Polled::Records(got) = c.poll(30, Duration::from_millis(100)).await.unwrap() else { panic!("no records") };
    assert_eq!(got.len(), 30);
    for p in 0..3 {
        assert_eq!(got.iter().filter(|r| r.partition == p).count(), 10, "partition {p}");
    }
    // When only one partition has data left, it gets the whole budget.
    log.append("in", (0..50).map(|_| rec(&keys[&1][0], "more")).collect()).await.unwrap();
    c.seek(0, 100);
    c.seek(2, 100);
    c.seek(1, 100);
    let Polled::Records(got) = c.poll(30, Duration::from_millis(100)).await.unwrap() else { panic!("no records") };
    assert_eq!(got.len(), 30);
    assert!(got.iter().all(|r| r.partition == 1));
}

#[tokio::test]
async fn compaction_keeps_the_latest_record_of_each_key_and_the_end_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open(
        &dir.path().join("log.db"),
        &[spec("in", 3), TopicSpec { name: "recs".into(), partitions: 1, compacted: true }],
    )
    .await
    .unwrap();
    log.append("recs", vec![rec("a", "1"), rec("b", "1"), rec("a", "2"), rec("b", "")]).await.unwrap();
    assert!(log.compact("in").await.is_err(), "not a compacted topic");
    assert_eq!(log.compact("recs").await.unwrap(), 2);
    let left: Vec<(u64, String, Vec<u8>)> =
        log.read("recs", 0, 0, 10).await.unwrap().into_iter().map(|r| (r.offset, r.key, r.payload)).collect();
    assert_eq!(left, vec![(2, "a".into(), b"2".to_vec()), (3, "b".into(), vec![])]);
    assert_eq!(log.end_offsets("recs").await.unwrap(), vec![4]);
    assert_eq!(log.append("recs", vec![rec("c", "1")]).await.unwrap()[0].offset, 4);
}

#[tokio::test]
async fn seek_moves_the_read_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    log.append("in", (0..5).map(|i| rec("k", &i.to_string())).collect()).await.unwrap();
    let p = partition_for("k", 3);
    let mut c = log.consumer("g", "in").await.unwrap();
    assert!(matches!(c.poll(10, Duration::from_millis(10)).await.unwrap(), Polled::Assigned(_)));
    c.seek(p, 3);
    let got = collect(c.as_mut(), 2).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_many_tasks_all_get_distinct_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
    let tasks = 32;
    let appends = 20;
    let per = 50;
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let producer = log.producer();
        handles.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for a in 0..appends {
                let records = (0..per).map(|i| rec(&format!("g:t{t}-{i}"), &format!("{t}/{a}/{i}"))).collect();
                positions.extend(producer.append("in", records).await.unwrap());
            }
            positions
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    let total = tasks * appends * per;
    eprintln!("appended {total} records in {elapsed:?}: {:.0} records/s", total as f64 / elapsed.as_secs_f64());
    assert_eq!(all.len(), total);
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for p in &all {
        by_partition.entry(p.partition).or_default().push(p.offset);
    }
    for (p, mut offsets) in by_partition {
        offsets.sort_unstable();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p}");
    }
    assert_eq!(log.end_offsets("in").await.unwrap().iter().sum::<u64>(), total as u64);
}
