//! Mapping of rdkafka errors onto `gm_ports::LogError`.

use gm_ports::{Cause, LogError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Error codes after which the same request may succeed later (503 for the gateway).
pub(crate) fn is_retriable_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | Resolve
            | MessageTimedOut
            | AllBrokersDown
            | OperationTimedOut
            | QueueFull
            | ISRInsufficient
            | WaitingForCoordinator
            | InProgress
            | PreviousInProgress
            | TimedOutQueue
            | Retry
            | PurgeQueue
            | PurgeInflight
            | LeaderNotAvailable
            | NotLeaderForPartition
            | RequestTimedOut
            | BrokerNotAvailable
            | ReplicaNotAvailable
            | NetworkException
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | NotController
            | KafkaStorageError
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | OffsetNotAvailable
            | UnstableOffsetCommit
            | ThrottlingQuotaExceeded
            | ConcurrentTransactions
            | EligibleLeadersNotAvailable
            | RebootstrapRequired
    )
}

/// Codes that mean "this group member is no longer the owner": a rebalance moved on.
pub(crate) fn is_group_fencing_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        IllegalGeneration
            | UnknownMemberId
            | FencedInstanceId
            | RebalanceInProgress
            | AssignmentLost
            | FencedMemberEpoch
            | StaleMemberEpoch
    )
}

/// Codes of a producer that another producer (same transactional id, newer epoch) fenced.
pub(crate) fn is_producer_fencing_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(code, ProducerFenced | InvalidProducerEpoch | Fenced | TransactionCoordinatorFenced)
}

/// Maps an rdkafka error; `topic` names the topic for `UnknownTopic`.
pub(crate) fn map_err(topic: &str, e: &KafkaError) -> LogError {
    let cause = Cause::new(e.clone());
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) if !topic.is_empty() => {
            LogError::UnknownTopic(topic.to_string())
        }
        Some(code) if is_group_fencing_code(code) || is_producer_fencing_code(code) => LogError::Fenced(cause),
        Some(code) if is_retriable_code(code) => LogError::Unavailable(cause),
        _ => match e {
            KafkaError::Transaction(t) if t.is_retriable() => LogError::Unavailable(cause),
            KafkaError::Transaction(t) if t.is_fatal() => LogError::Fenced(cause),
            KafkaError::Canceled => LogError::Unavailable(cause),
            _ => LogError::Other(cause),
        },
    }
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> LogError {
    LogError::Other(gm_ports::Cause::context("blocking Kafka call failed", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert!(matches!(
            map_err("t", &KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)),
            LogError::Unavailable(_)
        ));
        assert_eq!(
            map_err("t", &KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)),
            LogError::UnknownTopic("t".into())
        );
        assert!(matches!(
            map_err("t", &KafkaError::ConsumerCommit(RDKafkaErrorCode::IllegalGeneration)),
            LogError::Fenced(_)
        ));
        assert!(matches!(
            map_err("t", &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)),
            LogError::Other(_)
        ));
    }
}
