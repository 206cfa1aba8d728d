//! Append throughput against the real broker (ignored: a measurement, not a check).
//!
//! `cargo test -p gm-kafka --release --test throughput -- --ignored --nocapture`
//! Environment: GM_BENCH_EVENTS (default 200000), GM_BENCH_CONCURRENCY (default 32).

mod common;

use common::*;
use gm_ports::{EventLog, NewRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn append_throughput_batches_of_100() {
    let log = connect().await;
    let topic = EphemeralTopic::new(&log, 3).await;
    let events = env_usize("GM_BENCH_EVENTS", 200_000);
    let concurrency = env_usize("GM_BENCH_CONCURRENCY", 32);
    let batches = events / 100;
    let producer = log.producer();
    // 250-byte payloads of random hex (about as compressible as ProducerPerformance's
    // random letters), so the comparison with Kafka's own benchmark is fair.
    let payload = Arc::new(
        (0..8).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect::<String>().into_bytes()[..250].to_vec(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let producer = producer.clone();
        let topic = topic.name.clone();
        let payload = payload.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let records: Vec<NewRecord> = (0..100)
                    .map(|i| NewRecord {
                        key: format!("space-race:player-{}", (b * 100 + i) % 100_000),
                        payload: {
                            let mut p = payload.to_vec();
                            p[..8].copy_from_slice(&((b * 100 + i) as u64).to_le_bytes());
                            p.rotate_left((b * 7 + i) % 250);
                            p
                        },
                    })
                    .collect();
                let t = Instant::now();
                producer.append(&topic, records).await.expect("append");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ends: u64 = log.end_offsets(&topic.name).await.unwrap().iter().sum();
    assert_eq!(ends as usize, batches * 100);
    println!(
        "append: {} events in batches of 100, {concurrency} concurrent appends: {:.0} events/s; \
         per-append latency p50 {:?} p99 {:?} max {:?}",
        batches * 100,
        (batches * 100) as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
}
