//! Cost per event: the CPU time (user + system) each process spent during a phase, read from
//! `/proc/<pid>/stat` before and after it, divided by the events (or requests) of the phase.
//!
//! Processes: the roles the bench started (its children), this process (the load
//! generator), and in production the services in use — PostgreSQL (the postmaster serving
//! the configured port and every process below it, plus what its exited backends used,
//! which the kernel adds to the postmaster's `cutime`/`cstime` when it reaps them), Redis
//! (`redis-server` on the configured port) and Kafka (`java … kafka.Kafka`, the broker whose
//! properties file names the configured port; every broker when none does).

use std::collections::HashMap;

/// The fields of `/proc/<pid>/stat` the bench uses (times in clock ticks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcStat {
    pub comm: String,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    fn own_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Parses one `/proc/<pid>/stat` line. The command name is between the first `(` and the
/// last `)` and may itself hold spaces and parentheses; the fields after it are numbered
/// from 3 (state) in proc(5): ppid 4, utime 14, stime 15, cutime 16, cstime 17.
pub(super) fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        comm,
        ppid: field(4)? as u32,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// Milliseconds per clock tick (`getconf CLK_TCK`; Linux's USER_HZ is 100 nearly everywhere).
fn ms_per_tick() -> f64 {
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0);
    1000.0 / hz
}

/// The port of a URL (`scheme://user:pass@host:port/path`), or `default`.
pub(super) fn url_port(url: &str, default: u16) -> u16 {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(default)
}

/// The services whose processes are measured (production), by the port the bench uses.
#[derive(Debug, Clone, Default)]
pub(super) struct Services {
    pub postgres_port: Option<u16>,
    pub redis_port: Option<u16>,
    pub kafka_port: Option<u16>,
}

/// CPU milliseconds used so far, per process name.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot(Vec<(String, f64)>);

/// The CPU cost of one phase: per process, ms of CPU per 1,000 units (events or requests).
#[derive(Debug, Clone)]
pub(super) struct PhaseCost {
    pub phase: String,
    /// `events` or `requests`.
    pub unit: &'static str,
    pub count: u64,
    pub per_thousand: Vec<(String, f64)>,
}

impl PhaseCost {
    /// The cost between two snapshots (a process missing before started during the phase).
    pub fn between(phase: &str, unit: &'static str, count: u64, before: &Snapshot, after: &Snapshot) -> Self {
        let per_thousand = after
            .0
            .iter()
            .map(|(name, ms)| {
                let start = before.0.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v);
                (name.clone(), (ms - start).max(0.0) * 1000.0 / count.max(1) as f64)
            })
            .collect();
        Self { phase: phase.to_string(), unit, count, per_thousand }
    }
}

/// Reads the CPU time of the bench's processes.
pub(super) struct Meter {
    ms_per_tick: f64,
    services: Option<Services>,
}

impl Meter {
    pub fn new(services: Option<Services>) -> Self {
        Self { ms_per_tick: ms_per_tick(), services }
    }

    /// CPU ms so far of each role (`(name, pid)`), the services and this process.
    pub fn snapshot(&self, roles: &[(&'static str, u32)]) -> Snapshot {
        let mut out = Vec::new();
        for (name, pid) in roles {
            let ticks = read_stat(*pid).map_or(0, |s| s.own_ticks());
            out.push((name.to_string(), ticks as f64 * self.ms_per_tick));
        }
        if let Some(services) = &self.services {
            let table = ProcTable::read();
            for (name, ticks) in table.services(services) {
                out.push((name.to_string(), ticks as f64 * self.ms_per_tick));
            }
        }
        let own = read_stat(std::process::id()).map_or(0, |s| s.own_ticks());
        out.push(("load generator (bench process)".into(), own as f64 * self.ms_per_tick));
        Snapshot(out)
    }
}

/// Every process's stat, by pid.
struct ProcTable(HashMap<u32, ProcStat>);

impl ProcTable {
    fn read() -> Self {
        let mut table = HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(stat) = read_stat(pid) {
                    table.insert(pid, stat);
                }
            }
        }
        Self(table)
    }

    fn services(&self, services: &Services) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        if let Some(port) = services.kafka_port {
            out.push(("Kafka", self.kafka(port)));
        }
        if let Some(port) = services.postgres_port {
            out.push(("PostgreSQL", self.postgres(port)));
        }
        if let Some(port) = services.redis_port {
            out.push(("Redis", self.redis(port)));
        }
        out
    }

    fn kafka(&self, port: u16) -> u64 {
        let brokers: Vec<u32> = self.0.keys().copied().filter(|pid| cmdline(*pid).contains("kafka.Kafka")).collect();
        let on_port: Vec<u32> = brokers.iter().copied().filter(|pid| kafka_listens_on(*pid, port)).collect();
        let chosen = if on_port.is_empty() { brokers } else { on_port };
        chosen.iter().filter_map(|pid| self.0.get(pid)).map(ProcStat::own_ticks).sum()
    }

    fn redis(&self, port: u16) -> u64 {
        let servers: Vec<u32> =
            self.0.iter().filter(|(_, s)| s.comm.starts_with("redis-server")).map(|(p, _)| *p).collect();
        let needle = format!(":{port}");
        let on_port: Vec<u32> = servers
            .iter()
            .copied()
            .filter(|pid| cmdline(*pid).split_whitespace().any(|w| w.ends_with(&needle)))
            .collect();
        let chosen = if on_port.is_empty() && servers.len() == 1 { servers } else { on_port };
        chosen.iter().filter_map(|pid| self.0.get(pid)).map(ProcStat::own_ticks).sum()
    }

    /// The postmaster of the cluster on `port` and its whole tree, with its reaped children.
    fn postgres(&self, port: u16) -> u64 {
        let is_pg = |s: &ProcStat| s.comm == "postgres" || s.comm == "postmaster";
        let postmasters: Vec<u32> = self
            .0
            .iter()
            .filter(|(_, s)| is_pg(s) && !self.0.get(&s.ppid).is_some_and(is_pg))
            .map(|(p, _)| *p)
            .collect();
        let on_port: Vec<u32> = postmasters.iter().copied().filter(|pid| postmaster_port(*pid) == Some(port)).collect();
        let chosen = if on_port.is_empty() && postmasters.len() == 1 { postmasters } else { on_port };
        chosen.iter().map(|pid| self.tree_ticks(*pid)).sum()
    }

    /// Own ticks of `root` and of every process whose parent chain reaches it, plus the
    /// ticks of `root`'s reaped children.
    fn tree_ticks(&self, root: u32) -> u64 {
        let Some(root_stat) = self.0.get(&root) else { return 0 };
        let below = |mut pid: u32| {
            for _ in 0..64 {
                match self.0.get(&pid) {
                    Some(s) if s.ppid == root => return true,
                    Some(s) if s.ppid > 1 => pid = s.ppid,
                    _ => return false,
                }
            }
            false
        };
        let children: u64 = self.0.iter().filter(|(pid, _)| below(**pid)).map(|(_, s)| s.own_ticks()).sum();
        root_stat.own_ticks() + root_stat.cutime + root_stat.cstime + children
    }
}

/// The port in `postmaster.pid` (4th line) of the postmaster's data directory (its cwd),
/// or a `-p PORT` on its command line.
fn postmaster_port(pid: u32) -> Option<u16> {
    let pidfile = std::fs::read_to_string(format!("/proc/{pid}/cwd/postmaster.pid")).ok();
    if let Some(port) = pidfile.and_then(|t| t.lines().nth(3)?.trim().parse().ok()) {
        return Some(port);
    }
    let args = cmdline(pid);
    let mut words = args.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-p" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Whether a broker's properties file (the last `.properties` argument) names `port`.
fn kafka_listens_on(pid: u32, port: u16) -> bool {
    let args = cmdline(pid);
    let Some(file) = args.split_whitespace().rev().find(|a| a.ends_with(".properties")) else { return false };
    let path = if file.starts_with('/') {
        std::path::PathBuf::from(file)
    } else {
        std::path::Path::new(&format!("/proc/{pid}/cwd")).join(file)
    };
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines().any(|l| l.trim_start().starts_with("listeners") && l.contains(&format!(":{port}")))
    })
}

/// The load average line (`1 5 15` minutes) of `/proc/loadavg`.
pub(super) fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) 1) S 4000 4242 4000 0 -1 4194560 5000 0 0 0 1234 567 89 10 20 0 9 0 \
                    123456 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "tokio (rt) 1");
        assert_eq!((s.ppid, s.utime, s.stime, s.cutime, s.cstime), (4000, 1234, 567, 89, 10));
        assert_eq!(s.own_ticks(), 1801);
        assert!(parse_stat("12 (short) S 1 2").is_none());
    }

    #[test]
    fn reads_this_process() {
        let s = read_stat(std::process::id()).expect("/proc/self/stat");
        assert!(!s.comm.is_empty());
    }

    #[test]
    fn cost_per_thousand_between_snapshots() {
        let before = Snapshot(vec![("gateway".into(), 1000.0), ("bench".into(), 500.0)]);
        let after = Snapshot(vec![("gateway".into(), 3000.0), ("bench".into(), 700.0), ("actors".into(), 400.0)]);
        let cost = PhaseCost::between("ingest", "events", 4000, &before, &after);
        assert_eq!(
            cost.per_thousand,
            vec![("gateway".to_string(), 500.0), ("bench".to_string(), 50.0), ("actors".to_string(), 100.0)]
        );
    }

    #[test]
    fn ports_of_service_urls() {
        assert_eq!(url_port("postgres://gm:secret@127.0.0.1:5433/gamemetrics?sslmode=disable", 5432), 5433);
        assert_eq!(url_port("postgres://localhost/gm", 5432), 5432);
        assert_eq!(url_port("redis://127.0.0.1:6380", 6379), 6380);
        assert_eq!(url_port("127.0.0.1:9093", 9092), 9093);
    }
}
