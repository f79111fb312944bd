//! Which refusal records are written in full, and the summaries of the rest (docs/audit.md;
//! the windows themselves are [`crate::audit::throttle`]).
//!
//! A refusal is counted against its caller (`iss`, `sub`) once the token was checked, so a
//! caller cannot escape its window by changing address; before that, against the client's
//! network. Callers and networks are tracked apart, each up to `flood_max_keys`, so that
//! a flood from many addresses cannot push an authenticated caller out of its own summary.
//! One budget of full records is shared by both.
//!
//! Per minute the trail therefore grows by at most `flood_total_per_minute` full refusal
//! records and `2 × (flood_max_keys + 1)` summaries, whatever the flood.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;

use crate::audit::config::FloodConfig;
use crate::audit::record::{CallerInfo, Event, FloodSummary, Kind};
use crate::audit::throttle::{Addr, Budget, Closed, Decision, Network, Throttle, Why};
use crate::ids::CallerId;
use crate::metrics::ReasonLabel;

/// Length of a flood window and of the budget's window.
pub(super) const FLOOD_WINDOW: Duration = Duration::from_secs(60);

/// Values of `sipgw_audit_suppressed_total{reason}`, all present from start-up.
const REASONS: [&str; 3] = ["caller", "network", "budget"];

/// Flood control for refusal records.
pub(super) struct Flood {
    /// Windows per caller.
    callers: Throttle<CallerId>,
    /// Windows per client network, for refusals before a caller was known.
    networks: Throttle<Network>,
    /// Full refusal records per window, across both.
    budget: Budget,
    /// IPv4 network prefix length.
    ipv4_prefix: u8,
    /// IPv6 network prefix length.
    ipv6_prefix: u8,
    /// `sipgw_audit_suppressed_total{reason}`.
    suppressed: Family<ReasonLabel, Counter>,
}

impl Flood {
    pub(super) fn new(config: &FloodConfig) -> Self {
        let suppressed = Family::<ReasonLabel, Counter>::default();
        for reason in REASONS {
            // Created at 0, so that every reason is exposed from start-up.
            drop(suppressed.get_or_create(&ReasonLabel { reason }));
        }
        Self {
            callers: Throttle::new(config.caller_per_minute, FLOOD_WINDOW, config.max_keys),
            networks: Throttle::new(config.network_per_minute, FLOOD_WINDOW, config.max_keys),
            budget: Budget::new(config.total_per_minute, FLOOD_WINDOW),
            ipv4_prefix: config.ipv4_prefix,
            ipv6_prefix: config.ipv6_prefix,
            suppressed,
        }
    }

    /// The suppressed-records counter, for the metrics registry.
    pub(super) fn suppressed(&self) -> &Family<ReasonLabel, Counter> {
        &self.suppressed
    }

    /// Whether to write one refusal record in full; also the summaries of windows that
    /// closed on the way.
    pub(super) fn admit(
        &self,
        caller: Option<&CallerId>,
        ip: IpAddr,
        code: &'static str,
        now: Instant,
    ) -> (bool, Vec<Event>) {
        let (decision, summary, reason) = match caller {
            Some(caller) => {
                let (decision, closed) =
                    self.callers
                        .decide(caller.clone(), ip, code, &self.budget, now);
                (decision, closed.map(caller_summary), "caller")
            }
            None => {
                let network = Network::of(ip, self.ipv4_prefix, self.ipv6_prefix);
                let (decision, closed) = self.networks.decide(network, ip, code, &self.budget, now);
                (decision, closed.map(network_summary), "network")
            }
        };
        let write = match decision {
            Decision::Write => true,
            Decision::Suppress(Why::KeyLimit) => {
                self.suppressed.get_or_create(&ReasonLabel { reason }).inc();
                false
            }
            Decision::Suppress(Why::Budget) => {
                self.suppressed
                    .get_or_create(&ReasonLabel { reason: "budget" })
                    .inc();
                false
            }
        };
        (write, summary.into_iter().collect())
    }

    /// Summaries of windows expired by `now`.
    pub(super) fn sweep(&self, now: Instant) -> Vec<Event> {
        let callers = self.callers.sweep(now).into_iter().map(caller_summary);
        let networks = self.networks.sweep(now).into_iter().map(network_summary);
        callers.chain(networks).collect()
    }

    /// Summaries of every open window (at shutdown).
    pub(super) fn close_all(&self) -> Vec<Event> {
        let callers = self.callers.close_all().into_iter().map(caller_summary);
        let networks = self.networks.close_all().into_iter().map(network_summary);
        callers.chain(networks).collect()
    }
}

/// A caller's summary names it; `clientIp` is its one address, or `*` for several (and
/// for the overflow window, which names no caller).
fn caller_summary(closed: Closed<CallerId>) -> Event {
    let iss = closed.key.as_ref().map(|c| c.iss().to_owned());
    let sub = closed.key.as_ref().map(|c| c.sub().to_owned());
    let client_ip = match (closed.addr, &closed.key) {
        (Addr::One(ip), Some(_)) => ip.to_string(),
        (Addr::None | Addr::Several, _) | (_, None) => "*".to_owned(),
    };
    summary(
        CallerInfo {
            iss,
            sub,
            client_ip,
        },
        None,
        closed,
    )
}

/// A network's summary names it (`network`, CIDR); `clientIp` is its one address, or the
/// network for several. The overflow window names neither (`clientIp` `*`).
fn network_summary(closed: Closed<Network>) -> Event {
    let network = closed.key.map(|n| n.to_string());
    let client_ip = match (closed.addr, &network) {
        (Addr::One(ip), Some(_)) => ip.to_string(),
        (Addr::None | Addr::Several, Some(network)) => network.clone(),
        (_, None) => "*".to_owned(),
    };
    let caller = CallerInfo {
        iss: None,
        sub: None,
        client_ip,
    };
    summary(caller, network, closed)
}

fn summary<K>(caller: CallerInfo, network: Option<String>, closed: Closed<K>) -> Event {
    let codes: BTreeMap<String, u64> = closed
        .codes
        .into_iter()
        .map(|(code, n)| (code.to_owned(), n))
        .collect();
    Event {
        kind: Kind::Summary,
        request_id: None,
        caller,
        agent: None,
        code: "suppressed".into(),
        http_status: None,
        vendor: None,
        latency_ms: None,
        caller_name: None,
        forwarded_for: None,
        grant: None,
        replay_of: None,
        trace_id: None,
        suppressed: Some(closed.suppressed),
        flood: Some(FloodSummary {
            network,
            since: humantime::format_rfc3339_millis(closed.since).to_string(),
            codes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood(per_minute: u32) -> Flood {
        Flood::new(&FloodConfig {
            caller_per_minute: per_minute,
            network_per_minute: per_minute,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            max_keys: 100,
            total_per_minute: 1_000,
        })
    }

    fn written(flood: &Flood, caller: Option<&CallerId>, ips: &[&str]) -> usize {
        let now = Instant::now();
        ips.iter()
            .filter(|ip| {
                flood
                    .admit(caller, ip.parse().unwrap(), "unauthenticated", now)
                    .0
            })
            .count()
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_window_and_its_summary_names_the_network() {
        let flood = flood(2);
        let one_64 = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"];
        assert_eq!(written(&flood, None, &one_64), 2);
        // Another /64 has its own window.
        assert_eq!(written(&flood, None, &["2001:db8:1:3::1"]), 1);
        let summaries = flood.close_all();
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        let summary = &summaries[0];
        assert_eq!(summary.suppressed, Some(1));
        let detail = summary.flood.as_ref().unwrap();
        assert_eq!(detail.network.as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(
            detail.codes,
            BTreeMap::from([("unauthenticated".into(), 1)])
        );
        // The one suppressed record came from one address: the summary names it.
        assert_eq!(summary.caller.client_ip, "2001:db8:1:2:ffff::9");
        assert_eq!(
            flood
                .suppressed()
                .get_or_create(&ReasonLabel { reason: "network" })
                .get(),
            1
        );
    }

    #[test]
    fn a_caller_is_one_key_from_any_address() {
        let flood = flood(1);
        let mallory = CallerId::new("https://sso", "mallory");
        let ips = ["10.0.0.1", "10.0.0.2", "2001:db8::1"];
        assert_eq!(written(&flood, Some(&mallory), &ips), 1);
        let summary = &flood.close_all()[0];
        assert_eq!(summary.caller.sub.as_deref(), Some("mallory"));
        assert_eq!(summary.caller.client_ip, "*", "several addresses");
        assert_eq!(summary.suppressed, Some(2));
        assert!(summary.flood.as_ref().unwrap().network.is_none());
    }
}
