//! What the gateway's `/v1/status` reads, per deployment (gm_gateway::status): the actors'
//! committed group offsets from the embedded log's table or from Kafka (without joining the
//! group), and what the page cannot show there.

use crate::config::Config;
use crate::platform::{Backends, Roles};
use async_trait::async_trait;
use gm_gateway::status::{ConsumerGroups, StatusSources};
use gm_ports::LogError;
use std::sync::Arc;

/// The embedded log's consumer groups (one table in the log's database).
struct EmbeddedGroups(Arc<gm_embedded::SqliteLog>);

#[async_trait]
impl ConsumerGroups for EmbeddedGroups {
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        self.0.group_offsets(group, topic).await
    }
}

/// Kafka's consumer groups, in the deployment's namespace (`log.namespace`).
struct KafkaGroups {
    kafka: gm_kafka::KafkaLog,
    namespace: String,
}

#[async_trait]
impl ConsumerGroups for KafkaGroups {
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let physical = |name: &str| gm_ports::namespaced::physical_name(&self.namespace, name);
        self.kafka.group_offsets(&physical(group), &physical(topic)).await
    }
}

/// The status sources of a process running `roles` on `backends`: the embedded log's groups
/// on the embedded default, Kafka's in production.
pub fn sources(config: &Config, backends: &Backends, roles: Roles) -> Option<StatusSources> {
    let roles: Vec<&'static str> =
        [(roles.gateway, "gateway"), (roles.actors, "actors"), (roles.projections, "projections")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
    let (mode, groups, not_shown): (&'static str, Arc<dyn ConsumerGroups>, Vec<String>) =
        if let Some(log) = backends.embedded_log() {
            ("embedded", Arc::new(EmbeddedGroups(log)), Vec::new())
        } else {
            let kafka = backends.probes.as_ref()?.kafka.clone();
            let not_shown = vec![
                "The actors' and projections' processes' readiness: each serves its own /health/ready, and \
                 Prometheus has gamemetrics_ready{component} of every pod (Overview dashboard: pods not ready by role)."
                    .to_string(),
                "Other gateways: this answer is this gateway's own readiness.".to_string(),
            ];
            ("production", Arc::new(KafkaGroups { kafka, namespace: config.log.namespace.clone() }), not_shown)
        };
    Some(StatusSources {
        mode,
        roles,
        log: backends.log.clone(),
        read_models: backends.read_models.clone(),
        groups,
        not_shown,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gateway_names_the_actors_group_as_the_actors_do() {
        assert_eq!(gm_gateway::status::ACTORS_GROUP, gm_actors::runtime::GROUP);
    }
}
