//! Phase 7: the whole pipeline, live — events/s from the first request until every
//! projection has applied every event, and the event-to-read-model latency (FIFO
//! approximation: the n-th acknowledged event is taken to be the n-th applied one).

use super::catch_up::min_applied;
use super::process::RoleProcess;
use super::run::Bench;
use super::send::{prepare, SendReport};
use super::stats::percentile;
use crate::simulate::SentEvent;
use anyhow::bail;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub(super) struct PipelineReport {
    pub events: u64,
    pub ingest: SendReport,
    pub elapsed: Duration,
    pub latency_p50_s: f64,
    pub latency_p99_s: f64,
}

impl PipelineReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Bench<'_> {
    /// The live pipeline phase with its CPU cost (events: those acknowledged).
    pub async fn pipeline_phase(
        &self,
        gateway: &str,
        projections: &str,
        events: &[SentEvent],
        baseline: u64,
        roles: &[RoleProcess],
    ) -> anyhow::Result<PipelineReport> {
        eprintln!("bench: whole pipeline, {} events", events.len());
        let before = self.cpu(roles);
        let report = self.pipeline(gateway, projections, events, baseline).await?;
        self.cost(
            roles,
            "whole pipeline, live (until every read model has every event)",
            "events",
            report.events,
            &before,
        );
        Ok(report)
    }

    async fn pipeline(
        &self,
        gateway: &str,
        projections: &str,
        events: &[SentEvent],
        baseline: u64,
    ) -> anyhow::Result<PipelineReport> {
        let prepared = prepare(events, 100, 32);
        let acks = Rc::new(RefCell::new(Vec::new()));
        let applied_samples = Rc::new(RefCell::new(Vec::<(f64, u64)>::new()));
        let stop = Rc::new(RefCell::new(false));
        let started = Instant::now();
        let poller = self.poll_applied(projections, baseline, started, applied_samples.clone(), stop.clone());
        // The sender's clock starts a few microseconds after the poller's: shift its samples.
        let offset = started.elapsed().as_secs_f64();
        let sent = self.send(gateway, prepared, 0.0, Some(acks.clone())).await;
        let total = sent.accepted;
        let deadline = Instant::now() + Duration::from_secs(180);
        while applied_samples.borrow().last().map(|s| s.1).unwrap_or(0) < total && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        *stop.borrow_mut() = true;
        let _ = poller.await;
        sent.check("pipeline ingest")?;
        let acks: Vec<(f64, u64)> = acks.borrow().iter().map(|&(t, n)| (t + offset, n)).collect();
        let applied = applied_samples.borrow().clone();
        let Some(&(done_at, _)) = applied.iter().find(|s| s.1 >= total) else {
            bail!(
                "the projections applied {} of {total} events within 180 s of the last request",
                applied.last().map(|s| s.1).unwrap_or(0)
            );
        };
        let latencies = fifo_latencies(&acks, &applied, total);
        Ok(PipelineReport {
            events: total,
            ingest: sent,
            elapsed: Duration::from_secs_f64(done_at),
            latency_p50_s: percentile(&latencies, 0.5),
            latency_p99_s: percentile(&latencies, 0.99),
        })
    }

    /// Samples the smallest applied count (minus `baseline`) every 50 ms until `stop`.
    fn poll_applied(
        &self,
        projections: &str,
        baseline: u64,
        started: Instant,
        samples: Rc<RefCell<Vec<(f64, u64)>>>,
        stop: Rc<RefCell<bool>>,
    ) -> actix_rt::task::JoinHandle<()> {
        let client = self.client.clone();
        let url = format!("{projections}/metrics");
        let auth = self.credentials.metrics_auth.clone();
        actix_rt::spawn(async move {
            while !*stop.borrow() {
                if let Ok(mut r) = client.get(&url).insert_header(("Authorization", auth.as_str())).send().await {
                    if let Ok(body) = r.body().limit(16 << 20).await {
                        let applied = min_applied(&String::from_utf8_lossy(&body)).saturating_sub(baseline);
                        samples.borrow_mut().push((started.elapsed().as_secs_f64(), applied));
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

/// Latency of the n-th event (2,000 points over `total`), sorted: the first time the
/// applied count reaches n minus the first time the acknowledged count does.
fn fifo_latencies(acks: &[(f64, u64)], applied: &[(f64, u64)], total: u64) -> Vec<f64> {
    let points = 2_000u64.min(total);
    let mut latencies = Vec::with_capacity(points as usize);
    for i in 1..=points {
        let n = (total * i / points).max(1);
        let ack = acks.iter().find(|s| s.1 >= n).map(|s| s.0);
        let app = applied.iter().find(|s| s.1 >= n).map(|s| s.0);
        if let (Some(a), Some(b)) = (ack, app) {
            latencies.push((b - a).max(0.0));
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}
