//! Phases 1–3: ingest in batches of 100 as fast as the gateway answers, the same at half
//! that rate (for the latency), and one event per request.

use super::process::RoleProcess;
use super::run::{Bench, Plans};
use super::send::{prepare, SendReport};
use crate::simulate::SentEvent;

pub(super) struct IngestPhases {
    pub full: SendReport,
    pub half: SendReport,
    pub half_rate: f64,
    pub single: SendReport,
    /// Events acknowledged over every ingest phase, the warm-up included.
    pub sent: u64,
}

impl Bench<'_> {
    pub async fn ingest_phases(
        &self,
        gateway: &str,
        plans: &Plans,
        roles: &[RoleProcess],
    ) -> anyhow::Result<IngestPhases> {
        eprintln!("bench: warm-up");
        let warmup = self.send(gateway, prepare(&plans.warmup, 100, 32), 0.0, None).await;
        eprintln!("bench: ingest, batches of 100, {} events", plans.full.len());
        let full = self.measured_send("ingest, batches of 100", gateway, &plans.full, (100, 32), 0.0, roles).await;
        full.check("ingest")?;
        let half_rate = full.events_per_second() / 2.0;
        eprintln!("bench: ingest at half that rate ({half_rate:.0} events/s), {} events", plans.half.len());
        let phase = "ingest, batches of 100, half rate";
        let half = self.measured_send(phase, gateway, &plans.half, (100, 32), half_rate, roles).await;
        half.check("half-rate ingest")?;
        eprintln!("bench: one event per request, {} requests", plans.single.len());
        let lanes = (1, self.options.single_lanes);
        let single =
            self.measured_send("ingest, one event per request", gateway, &plans.single, lanes, 0.0, roles).await;
        single.check("single-event ingest")?;
        let sent = warmup.accepted + full.accepted + half.accepted + single.accepted;
        Ok(IngestPhases { full, half, half_rate, single, sent })
    }

    /// Sends `events` (`shape`: batch size, concurrent requests) and records the phase's CPU.
    async fn measured_send(
        &self,
        phase: &str,
        gateway: &str,
        events: &[SentEvent],
        shape: (usize, usize),
        rate: f64,
        roles: &[RoleProcess],
    ) -> SendReport {
        let prepared = prepare(events, shape.0, shape.1);
        let before = self.cpu(roles);
        let report = self.send(gateway, prepared, rate, None).await;
        self.cost(roles, phase, "events", report.accepted, &before);
        report
    }
}
