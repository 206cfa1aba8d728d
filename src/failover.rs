//! `gamemetrics kafka-failover --to-brokers HOST:PORT`: moves every position the platform
//! keeps from the primary Kafka cluster to its MirrorMaker 2 mirror (identity replication
//! policy), exactly: the actors' consumer-group offsets (committed on the mirror for the
//! same group), the snapshot watermarks and the projection checkpoints (PostgreSQL, one
//! transaction). The roles must be stopped on the primary and not yet started on the
//! mirror; the primary must still be readable (a planned failover; see
//! docs/runbooks/kafka-failover.md for the unplanned one). Translation: gm_kafka::failover.

use crate::config::{Config, Mode};
use anyhow::{bail, ensure, Context};
use gm_kafka::failover::{translate_position, Translated};
use gm_kafka::KafkaLog;
use gm_ports::namespaced::physical_name;
use gm_ports::Position;
use gm_postgres::{Moved, PgStore};
use gm_schemas::topics;
use serde::Serialize;

/// What was (or, with `--dry-run`, would be) moved.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub from_cluster: String,
    pub to_cluster: String,
    pub to_brokers: String,
    pub dry_run: bool,
    /// (topic, partition, what, primary offset, mirror offset)
    pub moved: Vec<(String, u32, String, u64, u64)>,
}

pub async fn kafka_failover(config: &Config, to_brokers: &str, dry_run: bool) -> anyhow::Result<FailoverReport> {
    ensure!(config.mode == Mode::Production, "a Kafka failover applies to the production mode");
    let primary = KafkaLog::connect(config.kafka.clone()).await.context("connecting to the primary Kafka")?;
    let mirror_config = gm_kafka::KafkaConfig { brokers: to_brokers.to_string(), ..config.kafka.clone() };
    let mirror = KafkaLog::connect(mirror_config).await.context("connecting to the mirror Kafka")?;
    let (from_cluster, to_cluster) = (primary.cluster_id().await?, mirror.cluster_id().await?);
    ensure!(from_cluster != to_cluster, "--to-brokers names the primary cluster itself ({from_cluster})");
    let store = PgStore::connect(&config.postgres.url, 2).await.context("connecting to PostgreSQL")?;
    if let Some(current) = store.log_cluster().await? {
        if current != from_cluster {
            bail!(
                "the stored positions refer to Kafka cluster {current}, not to the primary {from_cluster}: \
                 a failover to it was already done (run the roles against it)"
            );
        }
    }
    let ns = &config.log.namespace;
    let (raw, processed) = (physical_name(ns, topics::RAW), physical_name(ns, topics::PROCESSED));
    for topic in [&raw, &processed] {
        let (p, m) = (primary.partition_count(topic).await?, mirror.partition_count(topic).await);
        match m {
            Ok(m) if m == p => {}
            Ok(m) => bail!("{topic}: {p} partitions on the primary, {m} on the mirror"),
            Err(e) => bail!("{topic} is not on the mirror ({e}): is MirrorMaker replicating it?"),
        }
    }
    let mut report = FailoverReport {
        from_cluster,
        to_cluster: to_cluster.clone(),
        to_brokers: to_brokers.to_string(),
        dry_run,
        moved: Vec::new(),
    };
    let translate = |topic: &str, partition: u32, position: u64| {
        let (primary, mirror, topic) = (&primary, &mirror, topic.to_string());
        async move {
            translate_position(primary, mirror, &topic, partition, position)
                .await
                .with_context(|| format!("translating {topic}/{partition} at {position}"))
        }
    };

    // The actors' group: offsets committed in Kafka.
    let group = physical_name(ns, gm_actors::runtime::GROUP);
    let mut group_offsets = Vec::new();
    for (partition, committed) in primary.group_offsets(&group, &raw).await?.into_iter().enumerate() {
        let partition = partition as u32;
        if let Some(offset) = committed {
            let Translated { mirror: to, .. } = translate(&raw, partition, offset).await?;
            group_offsets.push(Position { partition, offset: to });
            report.moved.push((raw.clone(), partition, format!("group {group}"), offset, to));
        }
    }
    // Snapshot watermarks (raw) and projection checkpoints (processed), in PostgreSQL.
    let positions = store.log_positions().await?;
    let mut watermarks = Vec::new();
    for (partition, from) in positions.watermarks {
        let to = translate(&raw, partition, from).await?.mirror;
        report.moved.push((raw.clone(), partition, "snapshot watermark".into(), from, to));
        watermarks.push(Moved { partition, from, to });
    }
    let mut checkpoints = Vec::new();
    for (name, partition, from) in positions.checkpoints {
        let to = translate(&processed, partition, from).await?.mirror;
        report.moved.push((processed.clone(), partition, format!("checkpoint {name}"), from, to));
        checkpoints.push((name, Moved { partition, from, to }));
    }
    if !dry_run {
        // The mirror's coordinator refuses these commits while the group has members there.
        mirror
            .commit_group_offsets(&group, &raw, &group_offsets)
            .await
            .context("committing the actors' offsets on the mirror (are actors already running against it?)")?;
        store
            .move_log_positions(&watermarks, &checkpoints, &to_cluster, to_brokers)
            .await
            .context("moving the watermarks and checkpoints (is a role still running against the primary?)")?;
    }
    Ok(report)
}
