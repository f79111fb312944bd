//! What the report says, counted from a [`Review`]: plain data, no HTML, so that every
//! number on the page is unit-tested on its own.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::review::{Record, Review, Row};
use crate::audit::show::Period;

/// The code of a change the vendor applied.
const OK: &str = "ok";
/// The code of a change the vendor refused.
const VENDOR_REJECTED: &str = "vendor_rejected";
/// The code of a refusal by the lockout shield.
const LOCKOUT: &str = "lockout_protection";
/// How many callers each top list holds.
pub const TOP_CALLERS: usize = 10;
/// A period longer than this many days is charted by the days that have records only, so
/// that one record with a far-off clock cannot make a chart of thousands of empty days.
const MAX_CONTIGUOUS_DAYS: usize = 400;

/// How a password-change record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An `attempt` record (answered or not).
    Attempt,
    /// An outcome `ok` that reached the vendor: a changed password.
    Change,
    /// An outcome `vendor_rejected`: the vendor refused the change.
    VendorRejection,
    /// Another outcome that reached the vendor (`vendor_error`, `vendor_timeout`, ...).
    VendorFailure,
    /// An outcome that never reached the vendor.
    Refusal,
    /// An outcome answered from the first outcome of the same `Idempotency-Key`.
    Replay,
    /// Any other record (summary, checkpoint, discontinuity).
    Other,
}

/// Classifies one record.
pub fn class(record: &Record) -> Class {
    match record.kind.as_str() {
        "attempt" => Class::Attempt,
        "outcome" if record.replay_of.is_some() => Class::Replay,
        "outcome" => match record.code.as_deref() {
            Some(OK) => Class::Change,
            Some(VENDOR_REJECTED) => Class::VendorRejection,
            // A `vendor` object says the vendor was called, even when its answer was lost.
            _ if record.raw.get("vendor").is_some() => Class::VendorFailure,
            _ => Class::Refusal,
        },
        _ => Class::Other,
    }
}

/// The headline numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headline {
    /// Changes the vendor applied.
    pub changes: u64,
    /// Changes the vendor refused.
    pub vendor_rejections: u64,
    /// Changes that reached the vendor and failed otherwise (error, timeout).
    pub vendor_failures: u64,
    /// Requests refused before the vendor.
    pub refusals: u64,
    /// Of those, refusals by the lockout shield.
    pub lockouts: u64,
    /// Attempts no outcome answers: the vendor may have applied them.
    pub orphans: u64,
    /// Idempotent replays.
    pub replays: u64,
    /// Refusals flood control left out of the trail (from its summaries).
    pub suppressed: u64,
    /// Records that failed verification, over every trail (not only in the period).
    pub failed: u64,
}

/// A caller, as the trail names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Caller {
    /// Token subject.
    pub sub: String,
    /// Token issuer.
    pub iss: String,
}

/// One line of a top-callers list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerCount {
    /// Who.
    pub caller: Caller,
    /// The display name of their latest record that had one.
    pub name: Option<String>,
    /// How many.
    pub count: u64,
}

/// Counts per day (UTC), for a chart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Daily {
    /// The days charted, `YYYY-MM-DD`, in order.
    pub days: Vec<String>,
    /// One series per name (a code), each with one count per day; largest total first.
    pub series: Vec<(String, Vec<u64>)>,
}

impl Daily {
    fn new(days: &[String], counts: &BTreeMap<String, BTreeMap<String, u64>>) -> Self {
        let mut series: Vec<(String, Vec<u64>)> = counts
            .iter()
            .map(|(name, per_day)| {
                let values = days
                    .iter()
                    .map(|day| per_day.get(day).copied().unwrap_or(0))
                    .collect();
                (name.clone(), values)
            })
            .collect();
        series.sort_by(|a, b| {
            let total = |s: &(String, Vec<u64>)| s.1.iter().sum::<u64>();
            total(b).cmp(&total(a)).then_with(|| a.0.cmp(&b.0))
        });
        Self {
            days: days.to_vec(),
            series,
        }
    }

    /// Whether there is nothing to chart.
    pub fn is_empty(&self) -> bool {
        self.series
            .iter()
            .all(|(_, values)| values.iter().all(|&v| v == 0))
    }
}

/// Everything the page shows besides the chain status.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The password-change records (attempts and outcomes) in the period, in time order,
    /// and every record that failed verification.
    pub changes: Vec<&'a Row>,
    /// The headline numbers.
    pub headline: Headline,
    /// First and last record time in the period, as written.
    pub span: Option<(String, String)>,
    /// Changes per day.
    pub changes_per_day: Daily,
    /// Refusals per day, one series per code.
    pub refusals_per_day: Daily,
    /// Callers with the most changes.
    pub top_by_changes: Vec<CallerCount>,
    /// Callers with the most refusals.
    pub top_by_refusals: Vec<CallerCount>,
    /// Lockout-shield refusals.
    pub lockouts: Vec<&'a Row>,
    /// Attempts no outcome answers.
    pub orphans: Vec<&'a Row>,
    /// Per agent (as written), its outcomes and unanswered attempts in order.
    pub agents: BTreeMap<String, Vec<&'a Row>>,
}

impl<'a> Facts<'a> {
    /// Counts what `review` holds in `period`.
    pub fn gather(review: &'a Review, period: Period) -> Self {
        let rows: Vec<&Row> = review
            .rows
            .iter()
            .filter(|row| period.holds(&row.record))
            .collect();
        let mut facts = Facts {
            span: rows
                .first()
                .zip(rows.last())
                .map(|(a, b)| (a.record.ts.clone(), b.record.ts.clone())),
            ..Facts::default()
        };
        facts.headline.failed = review
            .trails
            .iter()
            .map(|trail| trail.failures.len() as u64)
            .sum();
        let mut changes_by_day: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut refusals_by_day: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut by_changes: BTreeMap<Caller, (Option<String>, u64)> = BTreeMap::new();
        let mut by_refusals: BTreeMap<Caller, (Option<String>, u64)> = BTreeMap::new();
        let mut days = BTreeSet::new();
        for row in rows {
            let record = &row.record;
            if let Some(day) = day_of(record) {
                days.insert(day);
            }
            let class = class(record);
            // A record that failed verification is shown (marked) but not counted: what
            // it says cannot be trusted, and a forged `ok` must not become a change.
            if row.problem.is_some() {
                facts.changes.push(row);
                continue;
            }
            if record.kind == "summary" {
                facts.headline.suppressed += record.suppressed.unwrap_or(0);
            }
            if class == Class::Other {
                continue;
            }
            facts.changes.push(row);
            let day = day_of(record).unwrap_or_default();
            let headline = &mut facts.headline;
            match class {
                Class::Change => {
                    headline.changes += 1;
                    bump(&mut changes_by_day, OK, &day);
                    tally(&mut by_changes, record);
                }
                Class::VendorRejection => headline.vendor_rejections += 1,
                Class::VendorFailure => headline.vendor_failures += 1,
                Class::Refusal => {
                    headline.refusals += 1;
                    let code = record.code.as_deref().unwrap_or("(no code)");
                    bump(&mut refusals_by_day, code, &day);
                    tally(&mut by_refusals, record);
                    if code == LOCKOUT {
                        headline.lockouts += 1;
                        facts.lockouts.push(row);
                    }
                }
                Class::Replay => headline.replays += 1,
                Class::Attempt if row.outcome_unknown => {
                    headline.orphans += 1;
                    facts.orphans.push(row);
                }
                Class::Attempt | Class::Other => {}
            }
            let answered_attempt = class == Class::Attempt && !row.outcome_unknown;
            if let (Some(agent), false) = (&record.agent, answered_attempt) {
                facts.agents.entry(agent.clone()).or_default().push(row);
            }
        }
        let days = chart_days(&days);
        facts.changes_per_day = Daily::new(&days, &changes_by_day);
        facts.refusals_per_day = Daily::new(&days, &refusals_by_day);
        facts.top_by_changes = top(by_changes);
        facts.top_by_refusals = top(by_refusals);
        facts
    }
}

/// The record's day (UTC), `YYYY-MM-DD`.
pub fn day_of(record: &Record) -> Option<String> {
    record
        .time
        .map(|time| time.strftime("%Y-%m-%d").to_string())
}

fn bump(counts: &mut BTreeMap<String, BTreeMap<String, u64>>, name: &str, day: &str) {
    *counts
        .entry(name.to_owned())
        .or_default()
        .entry(day.to_owned())
        .or_default() += 1;
}

fn tally(counts: &mut BTreeMap<Caller, (Option<String>, u64)>, record: &Record) {
    let caller = Caller {
        sub: record.sub.clone().unwrap_or_default(),
        iss: record.iss.clone().unwrap_or_default(),
    };
    let entry = counts.entry(caller).or_default();
    entry.1 += 1;
    if record.caller_name.is_some() {
        entry.0.clone_from(&record.caller_name);
    }
}

fn top(counts: BTreeMap<Caller, (Option<String>, u64)>) -> Vec<CallerCount> {
    let mut list: Vec<CallerCount> = counts
        .into_iter()
        // A refusal before authentication names no caller: it is not "a caller".
        .filter(|(caller, _)| !caller.sub.is_empty() || !caller.iss.is_empty())
        .map(|(caller, (name, count))| CallerCount {
            caller,
            name,
            count,
        })
        .collect();
    // Most first; ties in name order, so that the page is the same on every run.
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.caller.cmp(&b.caller)));
    list.truncate(TOP_CALLERS);
    list
}

/// Every day from the first to the last, so that quiet days show as gaps; only the days
/// with records when that would be more than [`MAX_CONTIGUOUS_DAYS`].
fn chart_days(days: &BTreeSet<String>) -> Vec<String> {
    let parse = |day: &String| day.parse::<jiff::civil::Date>().ok();
    let (Some(first), Some(last)) = (days.first().and_then(parse), days.last().and_then(parse))
    else {
        return days.iter().cloned().collect();
    };
    let contiguous: Vec<String> = first
        .series(jiff::Span::new().days(1))
        .take_while(|day| *day <= last)
        .take(MAX_CONTIGUOUS_DAYS + 1)
        .map(|day| day.to_string())
        .collect();
    if contiguous.len() > MAX_CONTIGUOUS_DAYS {
        days.iter().cloned().collect()
    } else {
        contiguous
    }
}
