//! Phase 6: actors and projections (started after the ingest phases in production) catch up
//! with the backlog; and reading `gamemetrics_projection_events_applied_total` from a
//! process's `/metrics`, which the later phases use too.

use super::cpu::Snapshot;
use super::process::RoleProcess;
use super::run::Bench;
use anyhow::bail;
use gm_projections::ProjectionName;
use std::time::{Duration, Instant};

pub(super) struct CatchUp {
    pub events: u64,
    /// From the start of the catch-up (production: the spawn of actors and projections) to
    /// the last projection applying the whole backlog.
    pub elapsed: Duration,
    /// From the start to the first poll that saw any projection apply an event: the processes'
    /// start, migrations check and consumer group join (production), not consumption.
    pub startup: Duration,
    /// The smallest applied count over the projections at the end.
    pub applied: u64,
    /// When each projection had applied the whole backlog, from the start of the catch-up.
    pub per_projection: Vec<(&'static str, Option<Duration>)>,
}

/// Where a catch-up starts: taken before actors and projections are spawned in production, so
/// the backlog they apply while starting up (before `/health/ready` answers) is inside the
/// phase, with its CPU. (Before, the clock started after readiness, by when the consumers had
/// often applied the whole backlog: the row read 0 events.)
pub(super) struct CatchUpStart {
    at: Instant,
    cpu: Snapshot,
    /// Events already applied at the start (embedded: what the one process applied during ingest).
    applied: u64,
}

impl Bench<'_> {
    /// Marks the start of the catch-up; `projections` is the URL of a running process that
    /// applies events, or `None` when they are not spawned yet (nothing applied).
    pub async fn catch_up_start(&self, projections: Option<&str>, roles: &[RoleProcess]) -> CatchUpStart {
        let applied = match projections {
            Some(url) => self.applied(url).await.unwrap_or(0),
            None => 0,
        };
        CatchUpStart { at: Instant::now(), cpu: self.cpu(roles), applied }
    }

    pub async fn catch_up(
        &self,
        start: CatchUpStart,
        projections: &str,
        sent: u64,
        roles: &[RoleProcess],
    ) -> anyhow::Result<CatchUp> {
        eprintln!("bench: waiting for actors and projections to catch up with {sent} events");
        let remaining = Duration::from_secs(240).saturating_sub(start.at.elapsed());
        let (applied, per_projection, first_seen) =
            self.wait_applied_each(projections, start.applied, sent, start.at, remaining).await;
        let elapsed = start.at.elapsed();
        let catch_up = CatchUp {
            events: sent.saturating_sub(start.applied),
            elapsed,
            startup: first_seen.unwrap_or(elapsed),
            applied,
            per_projection,
        };
        self.cost(roles, "catch-up (the backlog of the ingest phases)", "events", catch_up.events, &start.cpu);
        if applied < sent {
            bail!(
                "projections applied {applied} of {sent} events within 240 s; see the logs in {}",
                self.work_dir.display()
            );
        }
        Ok(catch_up)
    }

    /// The smallest `gamemetrics_projection_events_applied_total` over every projection.
    pub async fn applied(&self, url: &str) -> anyhow::Result<u64> {
        Ok(self.applied_each(url).await?.into_iter().min().unwrap_or(0))
    }

    /// `gamemetrics_projection_events_applied_total` of each projection (see
    /// [`applied_per_projection`]).
    async fn applied_each(&self, url: &str) -> anyhow::Result<Vec<u64>> {
        let request = self
            .client
            .get(format!("{url}/metrics"))
            .insert_header(("Authorization", self.credentials.metrics_auth.as_str()));
        let mut response = request.send().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = response.body().limit(16 << 20).await?;
        Ok(applied_per_projection(&String::from_utf8_lossy(&body)))
    }

    /// Waits (at most `timeout` from now) until every projection applied `target` events;
    /// returns the smallest count, when each projection got there and when any projection was
    /// first seen past `already` (all from `started`).
    async fn wait_applied_each(
        &self,
        url: &str,
        already: u64,
        target: u64,
        started: Instant,
        timeout: Duration,
    ) -> (u64, Vec<(&'static str, Option<Duration>)>, Option<Duration>) {
        let deadline = Instant::now() + timeout;
        let mut reached: Vec<(&'static str, Option<Duration>)> =
            ProjectionName::ALL.iter().map(|n| (n.as_str(), None)).collect();
        let mut first_seen = None;
        loop {
            // A failed scrape counts as no progress, as before the deadline.
            let per = self.applied_each(url).await.unwrap_or_default();
            if first_seen.is_none() && per.iter().any(|a| *a > already) {
                first_seen = Some(started.elapsed());
            }
            for ((_, when), applied) in reached.iter_mut().zip(&per) {
                if when.is_none() && *applied >= target {
                    *when = Some(started.elapsed());
                }
            }
            let applied = per.iter().copied().min().unwrap_or(0);
            if applied >= target || Instant::now() >= deadline {
                return (applied, reached, first_seen);
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(super) fn min_applied(metrics: &str) -> u64 {
    applied_per_projection(metrics).into_iter().min().unwrap_or(0)
}

/// `gamemetrics_projection_events_applied_total` of each projection, in `ProjectionName::ALL`
/// order (0 for one not reported yet).
fn applied_per_projection(metrics: &str) -> Vec<u64> {
    ProjectionName::ALL
        .iter()
        .map(|name| {
            let needle = format!("projection=\"{}\"", name.as_str());
            metrics
                .lines()
                .filter(|l| l.starts_with("gamemetrics_projection_events_applied_total") && l.contains(&needle))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .next()
                .map_or(0, |v| v as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn min_applied_is_zero_until_every_projection_reports() {
        let mut text = String::from("# TYPE gamemetrics_projection_events_applied counter\n");
        for (i, p) in ProjectionName::ALL.iter().enumerate() {
            let _ = writeln!(
                text,
                "gamemetrics_projection_events_applied_total{{projection=\"{}\"}} {}",
                p.as_str(),
                10 + i
            );
        }
        assert_eq!(min_applied(&text), 10);
        assert_eq!(min_applied("gamemetrics_projection_events_applied_total{projection=\"sessions\"} 5\n"), 0);
    }
}
