//! Phase 4 (production): Kafka's own `ProducerPerformance`, with gm-kafka's producer
//! settings, to fresh topics: the reference the ingest figure is compared with.

use super::run::Bench;
use super::send::{record_json, wire};
use crate::simulate::SentEvent;
use anyhow::{bail, Context as _};
use std::path::Path;
use std::process::Stdio;

pub(super) struct KafkaReport {
    pub label: String,
    pub records: u64,
    pub records_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub line: String,
}

impl Bench<'_> {
    /// Kafka's producer benchmark, with the gm-kafka producer settings, to a fresh topic:
    /// random records of `record_bytes` or, with `payloads`, the bench's own records.
    pub async fn producer_performance(
        &self,
        records: usize,
        record_bytes: usize,
        payloads: Option<&[SentEvent]>,
    ) -> anyhow::Result<KafkaReport> {
        let libs = std::env::var("GM_KAFKA_LIBS").unwrap_or_else(|_| ".services/kafka/libs".into());
        if !Path::new(&libs).is_dir() {
            bail!("no Kafka jars at {libs} (set GM_KAFKA_LIBS: eval \"$(scripts/services env)\")");
        }
        let java = std::env::var("JAVA_HOME").map(|h| format!("{h}/bin/java")).unwrap_or_else(|_| "java".into());
        let topic = self.producer_topic(payloads.is_some()).await?;
        let mut command = tokio::process::Command::new(&java);
        command
            .arg("-Xmx512m")
            .arg("-cp")
            .arg(format!("{libs}/*"))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", &topic, "--num-records", &records.to_string(), "--throughput", "-1"]);
        let label = match payloads {
            Some(events) => {
                let payload_file = self.work_dir.join("payloads.jsonl");
                let mut text = String::new();
                for e in events.iter().take(20_000) {
                    text.push_str(&record_json(e).unwrap_or_else(|| wire(e).to_string()));
                    text.push('\n');
                }
                std::fs::write(&payload_file, text)?;
                command.arg("--payload-file").arg(&payload_file);
                "the bench's own records (--payload-file)".to_string()
            }
            None => {
                command.args(["--record-size", &record_bytes.to_string()]);
                format!("random {record_bytes}-byte records (--record-size)")
            }
        };
        let p = &self.target.kafka.producer;
        command.arg("--producer-props").args([
            format!("bootstrap.servers={}", self.target.kafka.brokers),
            "acks=all".into(),
            "enable.idempotence=true".into(),
            format!("linger.ms={}", p.linger_ms),
            format!("batch.size={}", p.batch_size),
            format!("compression.type={}", p.compression.as_librdkafka()),
        ]);
        let output = command.stdin(Stdio::null()).output().await.with_context(|| format!("running {java}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| l.contains("records sent")).unwrap_or("").to_string();
        if !output.status.success() || last.is_empty() {
            bail!(
                "ProducerPerformance failed ({}): {}{}",
                output.status,
                stdout.lines().last().unwrap_or(""),
                String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
            );
        }
        parse_producer_performance(&last, label).context("parsing ProducerPerformance's last line")
    }

    /// A fresh topic with the raw topic's partition count.
    async fn producer_topic(&self, payloads: bool) -> anyhow::Result<String> {
        use gm_ports::EventLog as _;
        let suffix = if payloads { "payloads" } else { "sized" };
        let topic = format!("bench-{}.producer-perf-{suffix}", self.id);
        let kafka = &self.target.kafka;
        let log = gm_kafka::KafkaLog::connect(kafka.clone()).await.context("connecting to Kafka")?;
        log.ensure_topics(&[gm_ports::TopicSpec {
            name: topic.clone(),
            partitions: kafka.topics.raw.partitions,
            compacted: false,
        }])
        .await
        .context("creating the ProducerPerformance topic")?;
        Ok(topic)
    }
}

pub(super) fn parse_producer_performance(line: &str, label: String) -> anyhow::Result<KafkaReport> {
    // "200000 records sent, 141843.971631 records/sec (35.04 MB/sec), 12.77 ms avg latency,
    //  220.00 ms max latency, 8 ms 50th, 41 ms 95th, 90 ms 99th, 210 ms 99.9th."
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let number = |i: usize| -> anyhow::Result<f64> {
        let f = fields.get(i).context("missing field")?;
        Ok(f.split_whitespace().next().context("empty field")?.parse()?)
    };
    let field_with = |suffix: &str| fields.iter().position(|f| f.ends_with(suffix));
    Ok(KafkaReport {
        label,
        records: number(0)? as u64,
        records_per_second: number(1)?,
        p50_ms: field_with("50th").map(number).transpose()?.unwrap_or(0.0),
        p99_ms: field_with("99th").map(number).transpose()?.unwrap_or(0.0),
        line: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_performance_last_line() {
        let line = "200000 records sent, 141843.971631 records/sec (35.04 MB/sec), 12.77 ms avg latency, 220.00 ms max latency, 8 ms 50th, 41 ms 95th, 90 ms 99th, 210 ms 99.9th.";
        let r = parse_producer_performance(line, "x".into()).unwrap();
        assert_eq!(r.records, 200_000);
        assert!((r.records_per_second - 141_843.97).abs() < 0.1);
        assert_eq!((r.p50_ms, r.p99_ms), (8.0, 90.0));
    }
}
