//! Readiness of the components a role needs (its log, its stores, its consumer loops), set by
//! the role's watchers and served by `/health/ready`: ready only when every registered
//! component is.

use gm_telemetry::{ComponentGauge, ComponentLabels};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Shared, cheap to clone. A component registered with [`Readiness::register`] starts not
/// ready; with no component registered the process counts as ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    components: Arc<RwLock<BTreeMap<String, Component>>>,
    /// Components the process works without, only slower (the cache): reported, never
    /// failing readiness, so a Redis outage does not take every pod out of its Service.
    optional: Arc<RwLock<BTreeMap<String, bool>>>,
    /// `gamemetrics_ready{component}` of the required components, when set.
    gauge: Option<ComponentGauge>,
}

/// What a component's watcher found: ready, or not ready for a reason (served with the 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentState {
    Ready,
    NotReady(String),
}

#[derive(Debug, Clone, Default)]
struct Component {
    ready: bool,
    /// Why it is not ready (empty when ready or not known).
    reason: String,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also reports every required component as `gamemetrics_ready{component}` (1 or 0).
    pub fn with_gauge(mut self, gauge: ComponentGauge) -> Self {
        for (name, c) in self.read().iter() {
            gauge.get_or_create(&ComponentLabels { component: name.clone() }).set(i64::from(c.ready));
        }
        self.gauge = Some(gauge);
        self
    }

    /// Declares a component that must become ready (starts not ready).
    pub fn register(&self, component: &str) {
        let mut components = self.write();
        if !components.contains_key(component) {
            components.insert(component.to_string(), Component::default());
            self.report(component, false);
        }
    }

    /// Sets a component's state, registering it if needed.
    pub fn set_ready(&self, component: &str, ready: bool) {
        self.set(component, if ready { ComponentState::Ready } else { ComponentState::NotReady(String::new()) });
    }

    /// Sets a component's state, registering it if needed.
    pub fn set(&self, component: &str, state: ComponentState) {
        let component_state = match state {
            ComponentState::Ready => Component { ready: true, reason: String::new() },
            ComponentState::NotReady(reason) => Component { ready: false, reason },
        };
        let ready = component_state.ready;
        self.write().insert(component.to_string(), component_state);
        self.report(component, ready);
    }

    pub fn is_ready(&self) -> bool {
        self.read().values().all(|c| c.ready)
    }

    /// The components not ready, in name order.
    pub fn not_ready(&self) -> Vec<String> {
        self.read().iter().filter(|(_, c)| !c.ready).map(|(name, _)| name.clone()).collect()
    }

    /// Every component and its state.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.read().iter().map(|(name, c)| (name.clone(), c.ready)).collect()
    }

    /// Why each component that is not ready is not, when known.
    pub fn reasons(&self) -> BTreeMap<String, String> {
        self.read()
            .iter()
            .filter(|(_, c)| !c.ready && !c.reason.is_empty())
            .map(|(name, c)| (name.clone(), c.reason.clone()))
            .collect()
    }

    /// Sets the state of an optional component (reported as degraded when false).
    pub fn set_optional(&self, component: &str, healthy: bool) {
        self.optional.write().unwrap_or_else(|e| e.into_inner()).insert(component.to_string(), healthy);
    }

    /// Optional components that are down, in name order.
    pub fn degraded(&self) -> Vec<String> {
        let optional = self.optional.read().unwrap_or_else(|e| e.into_inner());
        optional.iter().filter(|(_, ok)| !**ok).map(|(name, _)| name.clone()).collect()
    }

    fn report(&self, component: &str, ready: bool) {
        if let Some(gauge) = &self.gauge {
            gauge.get_or_create(&ComponentLabels { component: component.to_string() }).set(i64::from(ready));
        }
    }

    // A panic while holding the lock cannot leave the map half-written (single inserts), so
    // a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Component>> {
        self.components.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Component>> {
        self.components.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registered_component_is() {
        let r = Readiness::new();
        r.register("log");
        r.register("store");
        assert!(!r.is_ready());
        r.set_ready("log", true);
        assert_eq!(r.not_ready(), vec!["store".to_string()]);
        r.clone().set_ready("store", true);
        assert!(r.is_ready());
        r.set_ready("log", false);
        assert!(!r.is_ready());
    }

    #[test]
    fn a_component_not_ready_carries_its_reason_and_its_gauge_follows() {
        let metrics = gm_telemetry::Metrics::new();
        let r = Readiness::new().with_gauge(metrics.ready.clone());
        r.register("kafka");
        let gauge = |c: &str| metrics.ready.get_or_create(&ComponentLabels { component: c.into() }).get();
        assert_eq!(gauge("kafka"), 0);
        r.set("kafka", ComponentState::Ready);
        assert_eq!(gauge("kafka"), 1);
        r.set("postgres", ComponentState::NotReady("SELECT 1 timed out after 2 s".into()));
        assert_eq!(gauge("postgres"), 0);
        assert_eq!(r.reasons(), BTreeMap::from([("postgres".to_string(), "SELECT 1 timed out after 2 s".to_string())]));
        r.set("postgres", ComponentState::Ready);
        assert!(r.reasons().is_empty());
        assert!(r.is_ready());
        assert!(metrics.encode().contains("gamemetrics_ready{component=\"postgres\"} 1"));
    }

    #[test]
    fn an_optional_component_down_degrades_but_keeps_ready() {
        let r = Readiness::new();
        r.set_ready("log", true);
        r.set_optional("cache", false);
        assert!(r.is_ready());
        assert_eq!(r.degraded(), vec!["cache".to_string()]);
        r.set_optional("cache", true);
        assert!(r.degraded().is_empty());
    }
}
