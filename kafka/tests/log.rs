//! gm-kafka against a real broker (GM_KAFKA_BROKERS): topics, appends, group consumers,
//! transactions, rebalances, fencing, end offsets and reads.

mod common;

use common::*;
use gm_kafka::{KafkaConfig, KafkaLog};
use gm_ports::{partition_for, EventLog, LogConsumer, LogError, NewRecord, Polled, Position, Record, TopicSpec};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn recs(prefix: &str, n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord {
            key: format!("space-race:{prefix}-player-{}", i % 37),
            payload: format!("{prefix}-{i}").into_bytes(),
            headers: Vec::new(),
        })
        .collect()
}

/// Next offsets to commit after `records`: last offset + 1 per partition (not dense!).
fn next_offsets(records: &[Record]) -> Vec<Position> {
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        next.insert(r.partition, r.offset + 1);
    }
    next.into_iter().map(|(partition, offset)| Position { partition, offset }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_loudly_when_the_broker_is_unreachable() {
    let mut cfg = KafkaConfig::with_brokers("127.0.0.1:1");
    cfg.request_timeout_ms = 1_500;
    match KafkaLog::connect(cfg).await {
        Err(LogError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_creates_missing_and_leaves_existing_alone() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 2).await;
    assert_eq!(log.partition_count(&topic.name).await.unwrap(), 2);
    // Asking again with another partition count: "already exists" is success, nothing changes.
    log.ensure_topics(&[TopicSpec { name: topic.name.clone(), partitions: 5, compacted: false }]).await.unwrap();
    assert_eq!(log.end_offsets(&topic.name).await.unwrap().len(), 2);
    let missing = random_name("test-missing");
    assert_eq!(log.end_offsets(&missing).await, Err(LogError::UnknownTopic(missing.clone())));
    let append = log.producer().append(&missing, recs("x", 1)).await;
    assert_eq!(append, Err(LogError::UnknownTopic(missing)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_returns_positions_in_input_order_and_keys_land_on_partition_for() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 4).await;
    let input = recs("a", 300);
    let positions = log.producer().append(&topic.name, input.clone()).await.expect("append");
    assert_eq!(positions.len(), input.len());
    let mut last: HashMap<u32, u64> = HashMap::new();
    for (rec, pos) in input.iter().zip(&positions) {
        assert_eq!(pos.partition, partition_for(&rec.key, 4), "key {}", rec.key);
        if let Some(prev) = last.insert(pos.partition, pos.offset) {
            assert!(pos.offset > prev, "offsets of a partition follow input order");
        }
    }
    // Without transactions offsets are dense: end offset = count per partition.
    let ends = log.end_offsets(&topic.name).await.unwrap();
    for p in 0..4u32 {
        let count = positions.iter().filter(|x| x.partition == p).count() as u64;
        assert_eq!(ends[p as usize], count, "partition {p}");
    }
    // Reading back gives each record at its position, in input order per partition.
    let by_pos: HashMap<(u32, u64), &NewRecord> =
        positions.iter().zip(&input).map(|(p, r)| ((p.partition, p.offset), r)).collect();
    let all = read_all(&log, &topic.name).await;
    assert_eq!(all.len(), input.len());
    for r in &all {
        let expected = by_pos[&(r.partition, r.offset)];
        assert_eq!((&r.key, &r.payload), (&expected.key, &expected.payload));
        assert_eq!(r.topic, topic.name);
    }
    // A read from the middle starts there.
    let p0 = positions[0].partition;
    let from = positions.iter().filter(|x| x.partition == p0).nth(3).unwrap().offset;
    let part = log.read(&topic.name, p0, from, 2).await.unwrap();
    assert_eq!(part.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![from, from + 1]);
    assert!(log.read(&topic.name, p0, ends[p0 as usize], 10).await.unwrap().is_empty());
    assert!(log.read(&topic.name, 9, 0, 10).await.is_err(), "no partition 9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_announces_assignment_first_and_resumes_from_committed_offsets() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 3).await;
    let group = random_name("group");
    log.producer().append(&topic.name, recs("b", 90)).await.unwrap();

    let mut c1 = log.consumer(&group, &topic.name).await.unwrap();
    let polled = poll_records(c1.as_mut(), 90, Duration::from_secs(30)).await;
    assert!(matches!(polled.first(), Some(Polled::Assigned(ps)) if ps == &vec![0, 1, 2]), "{polled:?}");
    let got = records_of(&polled);
    assert_eq!(got.len(), 90);
    for p in 0..3u32 {
        let offsets: Vec<u64> = got.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p} in offset order: {offsets:?}");
        assert_eq!(offsets.first(), Some(&0));
    }
    // Commit 10 records of each partition; a new member of the group starts there.
    let commit: Vec<Position> = (0..3).map(|partition| Position { partition, offset: 10 }).collect();
    c1.commit(&commit).await.unwrap();
    for p in 0..3 {
        assert_eq!(c1.committed(p).await.unwrap(), Some(10));
    }
    drop(c1);

    let mut c2 = log.consumer(&group, &topic.name).await.unwrap();
    let polled = poll_records(c2.as_mut(), 60, Duration::from_secs(30)).await;
    assert!(matches!(polled.first(), Some(Polled::Assigned(_))), "{polled:?}");
    let got = records_of(&polled);
    assert_eq!(got.len(), 60, "exactly the uncommitted records");
    assert!(got.iter().all(|r| r.offset >= 10));
    // A fresh group has nothing committed.
    let c3 = log.consumer(&random_name("group"), &topic.name).await.unwrap();
    assert_eq!(c3.committed(0).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_right_after_assignment_moves_the_position_both_ways() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 1).await;
    let group = random_name("group");
    log.producer().append(&topic.name, recs("s", 50)).await.unwrap();
    let mut c = log.consumer(&group, &topic.name).await.unwrap();
    // Seek immediately on the announcement (the fetcher has not started yet).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no assignment");
        match c.poll(100, Duration::from_millis(200)).await.unwrap() {
            Polled::Assigned(_) => break,
            Polled::Records(r) => panic!("records before Assigned: {r:?}"),
            _ => {}
        }
    }
    c.seek(0, 40);
    let got = records_of(&poll_records(c.as_mut(), 10, Duration::from_secs(30)).await);
    assert_eq!(got.first().map(|r| r.offset), Some(40));
    assert_eq!(got.len(), 10);
    // Backwards.
    c.seek(0, 5);
    let got = records_of(&poll_records(c.as_mut(), 45, Duration::from_secs(30)).await);
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (5..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_outputs_publishes_outputs_and_offsets_together() {
    let log = connect().await;
    let input = EphemeralTopic::new(&log, 2).await;
    let output = EphemeralTopic::new(&log, 3).await;
    let group = random_name("group");
    log.producer().append(&input.name, recs("c", 40)).await.unwrap();

    let mut c = log.consumer(&group, &input.name).await.unwrap();
    let got = records_of(&poll_records(c.as_mut(), 40, Duration::from_secs(30)).await);
    let outputs: Vec<NewRecord> =
        got.iter().map(|r| NewRecord::new(r.key.clone(), [b"out:", &r.payload[..]].concat())).collect();
    let offsets = next_offsets(&got);
    c.commit_with_outputs(&output.name, outputs.clone(), &offsets).await.expect("transaction");
    for pos in &offsets {
        assert_eq!(c.committed(pos.partition).await.unwrap(), Some(pos.offset));
    }
    let published = read_all(&log, &output.name).await;
    assert_eq!(published.len(), 40);
    for r in &published {
        assert_eq!(r.partition, partition_for(&r.key, 3));
    }
    // A transaction marker follows the data: the end offset is past the last record + 1.
    let ends = log.end_offsets(&output.name).await.unwrap();
    for p in 0..3u32 {
        let last = published.iter().filter(|r| r.partition == p).map(|r| r.offset).max();
        if let Some(last) = last {
            assert!(ends[p as usize] > last + 1, "partition {p}: end {} last {last}", ends[p as usize]);
        }
    }
    // Offsets only (no outputs) are fine too.
    c.commit_with_outputs(&output.name, Vec::new(), &[Position { partition: 0, offset: 1 }]).await.unwrap();
    assert_eq!(c.committed(0).await.unwrap(), Some(1));
}

/// Headers travel as Kafka headers: on a plain append, and on a transaction writing two
/// output topics (processed events and dead letters) with the consumed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_carried_and_one_transaction_writes_several_topics() {
    let log = connect().await;
    let input = EphemeralTopic::new(&log, 1).await;
    let out_a = EphemeralTopic::new(&log, 1).await;
    let out_b = EphemeralTopic::new(&log, 1).await;
    let with_headers =
        NewRecord::new("k", b"x".to_vec()).with_header("gm.error", "bad json").with_header("gm.attempts", "1");
    log.producer().append(&input.name, vec![with_headers, NewRecord::new("k", b"plain".to_vec())]).await.unwrap();
    let read = log.read(&input.name, 0, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].header("gm.error"), Some("bad json"));
    assert_eq!(read[0].header("gm.attempts"), Some("1"));
    assert!(read[1].headers.is_empty());

    let group = random_name("group");
    let mut c = log.consumer(&group, &input.name).await.unwrap();
    let got = records_of(&poll_records(c.as_mut(), 2, Duration::from_secs(30)).await);
    let outputs = vec![
        (out_a.name.clone(), vec![NewRecord::new("k", b"a".to_vec())]),
        (out_b.name.clone(), vec![NewRecord::new("k", b"b".to_vec()).with_header("gm.source.offset", "0")]),
    ];
    c.commit_with_outputs_to(outputs, &next_offsets(&got)).await.expect("transaction");
    assert_eq!(c.committed(0).await.unwrap(), Some(2));
    assert_eq!(read_all(&log, &out_a.name).await.len(), 1);
    let b = read_all(&log, &out_b.name).await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].header("gm.source.offset"), Some("0"));
}

/// A raw transactional producer shows what read_committed readers see while a transaction
/// is open, after it is aborted and after it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_aborted_transactions_are_invisible_to_readers() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", random_name("gm-test-raw"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(20);
    producer.init_transactions(timeout).unwrap();

    producer.begin_transaction().unwrap();
    for i in 0..5 {
        let payload = format!("aborted-{i}");
        producer.send(FutureRecord::to(&topic.name).key("k").payload(&payload).partition(0), timeout).await.unwrap();
    }
    assert_eq!(log.end_offsets(&topic.name).await.unwrap(), vec![0], "LSO stays before an open transaction");
    assert!(log.read(&topic.name, 0, 0, 10).await.unwrap().is_empty());
    producer.abort_transaction(timeout).unwrap();

    producer.begin_transaction().unwrap();
    producer.send(FutureRecord::to(&topic.name).key("k").payload("committed").partition(0), timeout).await.unwrap();
    producer.commit_transaction(timeout).unwrap();

    let all = read_all(&log, &topic.name).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].payload, b"committed");
    assert!(all[0].offset >= 6, "5 aborted records and a marker precede it: offsets are not dense");
    assert_eq!(log.end_offsets(&topic.name).await.unwrap(), vec![all[0].offset + 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_transactional_producer_gets_fenced_and_writes_nothing() {
    let log = connect().await;
    let input = EphemeralTopic::new(&log, 1).await;
    let output = EphemeralTopic::new(&log, 1).await;
    log.producer().append(&input.name, recs("z", 10)).await.unwrap();
    let txn_id = random_name("gm-test-zombie");

    let mut zombie =
        log.kafka_consumer(&random_name("group"), &input.name).await.unwrap().with_transactional_id(&txn_id);
    let got = records_of(&poll_records(&mut zombie, 10, Duration::from_secs(30)).await);
    let out = |tag: &str| vec![NewRecord::new("k", tag.as_bytes().to_vec())];
    zombie.commit_with_outputs(&output.name, out("first"), &next_offsets(&got[..5])).await.unwrap();

    // A new incarnation with the same transactional id fences the old one.
    let mut successor =
        log.kafka_consumer(&random_name("group"), &input.name).await.unwrap().with_transactional_id(&txn_id);
    let got2 = records_of(&poll_records(&mut successor, 10, Duration::from_secs(30)).await);
    successor.commit_with_outputs(&output.name, out("successor"), &next_offsets(&got2)).await.unwrap();

    let result = zombie.commit_with_outputs(&output.name, out("zombie"), &next_offsets(&got)).await;
    assert!(matches!(result, Err(LogError::Fenced(_))), "{result:?}");
    assert_eq!(zombie.committed(0).await.unwrap(), Some(5), "the zombie's offsets were not committed");
    let payloads: Vec<Vec<u8>> = read_all(&log, &output.name).await.into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, vec![b"first".to_vec(), b"successor".to_vec()]);
}

/// A member that stopped polling is removed from the group; its late transaction is
/// refused (generation fencing, KIP-447) and nothing of it becomes visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rebalanced_away_is_fenced_and_its_outputs_are_never_visible() {
    let mut cfg = config();
    cfg.consumer.max_poll_interval_ms = 7_000;
    let log = connect_with(cfg).await;
    let input = EphemeralTopic::new(&log, 2).await;
    let output = EphemeralTopic::new(&log, 1).await;
    let group = random_name("group");
    log.producer().append(&input.name, recs("g", 20)).await.unwrap();

    let mut old = log.consumer(&group, &input.name).await.unwrap();
    let got = records_of(&poll_records(old.as_mut(), 20, Duration::from_secs(30)).await);
    // `old` stops polling; a new member joins and eventually gets every partition.
    let mut new = log.consumer(&group, &input.name).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut owned = std::collections::BTreeSet::new();
    while owned.len() < 2 {
        assert!(Instant::now() < deadline, "new member never got both partitions");
        match new.poll(100, Duration::from_millis(200)).await.unwrap() {
            Polled::Assigned(ps) => owned.extend(ps),
            Polled::Revoked(ps) => ps.iter().for_each(|p| {
                owned.remove(p);
            }),
            _ => {}
        }
    }
    let outputs = vec![NewRecord::new("k", b"late".to_vec())];
    let result = old.commit_with_outputs(&output.name, outputs, &next_offsets(&got)).await;
    assert!(matches!(result, Err(LogError::Fenced(_))), "{result:?}");
    assert!(read_all(&log, &output.name).await.is_empty(), "aborted outputs are invisible");
    for p in 0..2 {
        assert_eq!(new.committed(p).await.unwrap(), None);
    }
    // The old member learns about it at its next poll.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "old member never saw Revoked");
        if let Polled::Revoked(_) = old.poll(100, Duration::from_millis(200)).await.unwrap() {
            break;
        }
    }
}

/// What one member of the handover test saw.
#[derive(Default, Debug)]
struct MemberLog {
    assigned: usize,
    revoked: usize,
    processed: usize,
    fenced: usize,
}

/// Consume-transform-produce like the actors: on Assigned seek to the committed offset,
/// forward each record to `output` with its offsets in one transaction, recover on error.
async fn member(log: KafkaLog, group: String, input: String, output: String, stop: Arc<AtomicBool>) -> MemberLog {
    let mut seen = MemberLog::default();
    let mut c = log.consumer(&group, &input).await.unwrap();
    let mut owned: Vec<u32> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match c.poll(200, Duration::from_millis(100)).await {
            Ok(Polled::Assigned(ps)) => {
                seen.assigned += 1;
                for p in ps {
                    let committed = c.committed(p).await.unwrap();
                    c.seek(p, committed.unwrap_or(0));
                    owned.push(p);
                }
            }
            Ok(Polled::Revoked(ps)) => {
                seen.revoked += 1;
                owned.retain(|p| !ps.contains(p));
            }
            Ok(Polled::Records(records)) => {
                let outputs: Vec<NewRecord> =
                    records.iter().map(|r| NewRecord::new(r.key.clone(), r.payload.clone())).collect();
                match c.commit_with_outputs(&output, outputs, &next_offsets(&records)).await {
                    Ok(()) => seen.processed += records.len(),
                    Err(e) => {
                        seen.fenced += 1;
                        eprintln!("member of {group}: {e}; re-reading committed offsets");
                        for &p in &owned {
                            if let Ok(committed) = c.committed(p).await {
                                c.seek(p, committed.unwrap_or(0));
                            }
                        }
                    }
                }
            }
            Ok(Polled::Idle) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_hands_partitions_over_without_losing_or_duplicating_records() {
    handover("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_rebalance_hands_partitions_over_without_losing_or_duplicating_records() {
    handover("range,roundrobin").await;
}

async fn handover(strategy: &str) {
    let mut cfg = config();
    cfg.consumer.assignment_strategy = strategy.into();
    let log = connect_with(cfg).await;
    let input = EphemeralTopic::new(&log, 6).await;
    let output = EphemeralTopic::new(&log, 6).await;
    let group = random_name("group");
    let stop = Arc::new(AtomicBool::new(false));
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 100;

    let m1 = tokio::spawn(member(log.clone(), group.clone(), input.name.clone(), output.name.clone(), stop.clone()));
    let producer = log.producer();
    let mut expected = Vec::new();
    let mut m2 = None;
    for b in 0..BATCHES {
        let batch = recs(&format!("h{b}"), PER_BATCH);
        expected.extend(batch.iter().map(|r| r.payload.clone()));
        producer.append(&input.name, batch).await.unwrap();
        if b == BATCHES / 3 {
            m2 = Some(tokio::spawn(member(
                log.clone(),
                group.clone(),
                input.name.clone(),
                output.name.clone(),
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = BATCHES * PER_BATCH;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = read_all(&log, &output.name).await.len();
        if n >= total {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} of {total} outputs");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let s1 = m1.await.unwrap();
    let s2 = m2.unwrap().await.unwrap();
    eprintln!("{strategy}: member 1: {s1:?}\nmember 2: {s2:?}");
    assert!(s1.revoked >= 1, "member 1 saw a revocation: {s1:?}");
    assert!(s2.assigned >= 1 && s2.processed > 0, "member 2 took partitions over: {s2:?}");

    let mut got: Vec<Vec<u8>> = read_all(&log, &output.name).await.into_iter().map(|r| r.payload).collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "outputs == inputs exactly");
    assert_eq!(got, expected);
}

/// An empty payload goes out as a null value: the tombstone a compacted topic
/// (recommendations.generated) needs to forget a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_payload_is_appended_as_a_null_value_tombstone() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let log = connect().await;
    let topic = EphemeralTopic::with_compaction(&log, 1, true).await;
    let records = vec![NewRecord::new("g:p1", b"list".to_vec()), NewRecord::new("g:p1", Vec::new())];
    log.producer().append(&topic.name, records).await.expect("append");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", random_name("tombstone-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic.name, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut values: Vec<Option<Vec<u8>>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while values.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            values.push(m.payload().map(<[u8]>::to_vec));
        }
    }
    assert_eq!(values, vec![Some(b"list".to_vec()), None]);
}
