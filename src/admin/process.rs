//! The standard process metrics, under the names every Prometheus client library uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), unprefixed, since
//! that is what dashboards and alerts written for any service expect.
//!
//! Linux only: they are read from `/proc/self` (and the open-files limit from
//! `getrlimit`) at each scrape, a few small reads and one directory listing bounded by the
//! connection caps. Elsewhere they are left out. `prometheus-client` has no such collector,
//! and the one maintained crate that adds it follows an older `prometheus-client`
//! (docs/decisions.md, "Metrics").

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc/self/stat` tells, in its own units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// User plus system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// When the process started, in clock ticks after boot.
    start_ticks: u64,
    /// Virtual memory size, in bytes.
    virtual_bytes: u64,
    /// Resident set size, in pages.
    resident_pages: u64,
}

impl Stat {
    /// Parses the one line of `/proc/self/stat` (proc(5)). The command name (field 2) is in
    /// parentheses and may itself hold spaces and parentheses, so fields are counted from
    /// the last `)`.
    fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.rsplit_once(')')?;
        // rest[0] is field 3 (state): field n is rest[n - 3].
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
            resident_pages: field(24)?,
        })
    }

    /// Reads this process's line.
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }
}

/// The `btime` line of `/proc/stat`: when the machine booted, in Unix seconds.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Reads `process_*` at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of CPU and start times.
    ticks_per_second: f64,
    /// Bytes per page, the unit of the resident set size.
    page_bytes: u64,
    /// When the process started (Unix seconds); it does not change, so it is read once.
    start_time: Option<f64>,
}

impl ProcessCollector {
    /// Reads the constants, and the start time once.
    pub(super) fn new() -> Self {
        let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
        let start_time = Stat::read().zip(
            std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(boot_time),
        );
        Self {
            ticks_per_second,
            page_bytes: rustix::param::page_size() as u64,
            start_time: start_time
                .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / ticks_per_second),
        }
    }
}

/// Entries of `/proc/self/fd`: the open file descriptors (the listing's own included, as
/// every client library counts it).
fn open_fds() -> Option<i64> {
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(count).ok()
}

/// The soft limit on open files; `None` when unlimited.
fn max_fds() -> Option<i64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    i64::try_from(limit.current?).ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // A value that cannot be read is left out of this scrape rather than failing it.
        if let Some(stat) = Stat::read() {
            let cpu = ConstCounter::new(stat.cpu_ticks as f64 / self.ticks_per_second);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let resident = stat.resident_pages.saturating_mul(self.page_bytes);
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                i64::try_from(resident).unwrap_or(i64::MAX),
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                i64::try_from(stat.virtual_bytes).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(fds) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        if let Some(start) = self.start_time {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_stat_line_is_read_from_the_fields_after_the_command_name() {
        // A command name with a space and a parenthesis, as a process may call itself.
        let line = "4242 (sip gw) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    120 35 0 0 20 0 9 0 987654 1262735360 2816 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17415 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                cpu_ticks: 155,
                start_ticks: 987_654,
                virtual_bytes: 1_262_735_360,
                resident_pages: 2816,
            })
        );
        assert_eq!(Stat::parse("4242 (sipgw) S 1 2"), None, "too few fields");
        assert_eq!(Stat::parse("no parenthesis"), None);
    }

    #[test]
    fn the_boot_time_is_the_btime_line() {
        let proc_stat = "cpu  1 2 3 4\nintr 5 6\nbtime 1767225600\nprocesses 7\n";
        assert_eq!(boot_time(proc_stat), Some(1_767_225_600));
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let collector = ProcessCollector::new();
        let stat = Stat::read().expect("/proc/self/stat on Linux");
        assert!(
            stat.resident_pages > 0 && stat.virtual_bytes > 0,
            "{stat:?}"
        );
        let start = collector.start_time.expect("a start time");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // This test process started at most a day ago (a generous bound for a slow run).
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(open_fds().is_some_and(|n| n >= 3));
        assert!(max_fds().is_none_or(|max| max >= open_fds().unwrap()));
    }
}
