//! How librdkafka's own reports reach the log: at the level of what they mean, so that an
//! ERROR line is something an operator must act on.
//!
//! librdkafka reports through two callbacks, and rdkafka's default context logs both at
//! ERROR whatever they say: its log lines (`log`) and the errors it tells the application
//! about (`error`). Many of them are normal client events:
//!
//! * **end of partition** (`PartitionEOF`, "Fetch from broker 1 reached end of partition at
//!   offset …"): a reader caught up — the assign-only reader asks for it, and the projections'
//!   stall check reads a partition whose lag is transaction markers. DEBUG.
//! * **an idle connection closed** by the broker (`connections.max.idle.ms`, "Disconnected
//!   (after 600012ms in state UP)"): librdkafka reconnects when needed. DEBUG.
//! * **a broker unreachable or a request timed out** (transport failure, all brokers down,
//!   name resolution, timeouts): the client retries on its own, and what depends on it fails
//!   visibly where it matters (a 503 to the client, readiness, the stall watchdog). WARN.
//!
//! A fatal error (the client cannot go on: fenced producer, unrecoverable idempotence state)
//! and anything not known to be benign stay ERROR. librdkafka's log lines at its `Error` level
//! duplicate what the error callback reports, so they are WARN; its `Emerg`/`Alert`/`Critical`
//! lines stay ERROR.
//!
//! [`ClientLog`] is the context of the clients that need nothing else (admin, producers, the
//! metadata client and the reader); [`crate::GroupContext`] applies the same rules.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The level a report of librdkafka deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Debug,
    Info,
    Warn,
    Error,
}

fn is_idle_disconnect(reason: &str) -> bool {
    // "ssl://broker:9093/1: Disconnected (after 600012ms in state UP)"; a connection that
    // broke while in use says "Disconnected while requesting …" or names a failure instead.
    reason.contains("Disconnected (after") && reason.contains("in state UP")
}

fn is_end_of_partition(reason: &str) -> bool {
    reason.contains("reached end of partition")
}

/// The level of an error reported through the error callback.
pub fn error_severity(error: &KafkaError, reason: &str) -> Severity {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::PartitionEOF(_) => return Severity::Debug,
        KafkaError::MessageConsumptionFatal(_) => return Severity::Error,
        other => other.rdkafka_error_code(),
    };
    match code {
        Some(C::PartitionEOF) => Severity::Debug,
        _ if is_end_of_partition(reason) => Severity::Debug,
        Some(C::BrokerTransportFailure) if is_idle_disconnect(reason) => Severity::Debug,
        Some(
            C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress,
        ) => Severity::Warn,
        _ => Severity::Error,
    }
}

/// The level of one of librdkafka's log lines.
pub fn log_severity(level: RDKafkaLogLevel, message: &str) -> Severity {
    if is_end_of_partition(message) || is_idle_disconnect(message) {
        return Severity::Debug;
    }
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => Severity::Error,
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => Severity::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Severity::Info,
        RDKafkaLogLevel::Debug => Severity::Debug,
    }
}

macro_rules! emit {
    ($severity:expr, $($field:tt)*) => {
        match $severity {
            Severity::Debug => tracing::debug!($($field)*),
            Severity::Info => tracing::info!($($field)*),
            Severity::Warn => tracing::warn!($($field)*),
            Severity::Error => tracing::error!($($field)*),
        }
    };
}

/// Logs an error of the error callback at its [`error_severity`]; `client` names the client
/// (`consumer of player.events.raw`, `producer`...).
pub(crate) fn report_error(client: &str, error: &KafkaError, reason: &str) {
    emit!(error_severity(error, reason), client, error = %error, reason, "Kafka client report");
}

/// Logs a librdkafka log line at its [`log_severity`].
pub(crate) fn report_log(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    emit!(log_severity(level, message), client, facility, "librdkafka: {message}");
}

/// The context of a client that needs nothing but truthful logging.
#[derive(Debug, Clone, Copy)]
pub struct ClientLog {
    /// What the client is, for the log (`producer`, `admin`, `reader`, `metadata`...).
    pub client: &'static str,
}

impl ClientLog {
    pub const fn new(client: &'static str) -> Self {
        Self { client }
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        report_log(self.client, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_error(self.client, &error, reason);
    }
}

impl ConsumerContext for ClientLog {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_partition_and_idle_disconnects_are_debug() {
        let eof = "Fetch from broker 1 reached end of partition at offset 120 (HighwaterMark 120)";
        assert_eq!(error_severity(&KafkaError::PartitionEOF(2), eof), Severity::Debug);
        assert_eq!(error_severity(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF), eof), Severity::Debug);
        assert_eq!(
            error_severity(&KafkaError::MessageConsumption(RDKafkaErrorCode::PartitionEOF), eof),
            Severity::Debug
        );
        assert_eq!(log_severity(RDKafkaLogLevel::Error, eof), Severity::Debug);
        let idle = "127.0.0.1:9092/1: Disconnected (after 600012ms in state UP)";
        assert_eq!(
            error_severity(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), idle),
            Severity::Debug
        );
        assert_eq!(log_severity(RDKafkaLogLevel::Error, idle), Severity::Debug);
    }

    #[test]
    fn outages_the_client_retries_are_warnings_and_the_rest_errors() {
        let refused = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
        for code in [RDKafkaErrorCode::BrokerTransportFailure, RDKafkaErrorCode::AllBrokersDown] {
            assert_eq!(error_severity(&KafkaError::Global(code), refused), Severity::Warn, "{code:?}");
        }
        assert_eq!(
            error_severity(
                &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                "1: Disconnected while requesting ApiVersion"
            ),
            Severity::Warn
        );
        assert_eq!(log_severity(RDKafkaLogLevel::Error, refused), Severity::Warn);
        assert_eq!(log_severity(RDKafkaLogLevel::Critical, "out of memory"), Severity::Error);
        assert_eq!(log_severity(RDKafkaLogLevel::Info, "joined"), Severity::Info);
        // Not known to be benign: stays an error.
        let fenced = KafkaError::Global(RDKafkaErrorCode::ProducerFenced);
        assert_eq!(error_severity(&fenced, "producer fenced"), Severity::Error);
        let fatal = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::InvalidRecord);
        assert_eq!(error_severity(&fatal, ""), Severity::Error);
    }
}
