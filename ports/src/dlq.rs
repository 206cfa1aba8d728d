//! Dead letters on `system.dlq`, written alike by the actors and the projections: the
//! record's key and payload unchanged, the reason and origin in headers, so that
//! `gamemetrics dlq replay` can re-append it as it was.

use crate::{NewRecord, Record};

/// Header names of a dead letter.
pub mod headers {
    pub const ERROR: &str = "gm.error";
    pub const SOURCE_TOPIC: &str = "gm.source.topic";
    pub const SOURCE_PARTITION: &str = "gm.source.partition";
    pub const SOURCE_OFFSET: &str = "gm.source.offset";
    pub const ATTEMPTS: &str = "gm.attempts";
    pub const FAILED_AT: &str = "gm.failed_at";
}

/// The dead letter of `record`, which failed `attempts` times for `reason`.
pub fn dead_letter(record: &Record, reason: &str, attempts: u32) -> NewRecord {
    NewRecord::new(record.key.clone(), record.payload.clone())
        .with_header(headers::ERROR, reason)
        .with_header(headers::SOURCE_TOPIC, record.topic.clone())
        .with_header(headers::SOURCE_PARTITION, record.partition.to_string())
        .with_header(headers::SOURCE_OFFSET, record.offset.to_string())
        .with_header(headers::ATTEMPTS, attempts.to_string())
        .with_header(headers::FAILED_AT, chrono::Utc::now().to_rfc3339())
}
