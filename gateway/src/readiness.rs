//! Readiness flags that the roles (log, stores, actors, projections) set, served by
//! `/health/ready`: ready only when every registered component is.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Shared, cheap to clone. A component registered with [`Readiness::register`] starts not
/// ready; with no component registered the process counts as ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    components: Arc<RwLock<BTreeMap<String, bool>>>,
    /// Components the process works without, only slower (the cache): reported, never
    /// failing readiness, so a Redis outage does not take every pod out of its Service.
    optional: Arc<RwLock<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a component that must become ready (starts not ready).
    pub fn register(&self, component: &str) {
        self.write().entry(component.to_string()).or_insert(false);
    }

    /// Sets a component's state, registering it if needed.
    pub fn set_ready(&self, component: &str, ready: bool) {
        self.write().insert(component.to_string(), ready);
    }

    pub fn is_ready(&self) -> bool {
        self.read().values().all(|ready| *ready)
    }

    /// The components not ready, in name order.
    pub fn not_ready(&self) -> Vec<String> {
        self.read().iter().filter(|(_, ready)| !**ready).map(|(name, _)| name.clone()).collect()
    }

    /// Every component and its state.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.read().clone()
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

    // A panic while holding the lock cannot leave the map half-written (single inserts), so
    // a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, bool>> {
        self.components.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, bool>> {
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
