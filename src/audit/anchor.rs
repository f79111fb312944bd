//! Anchors (docs/audit.md, "Anchors"): `checkpoint` records kept off the host, and what
//! `sipgw audit verify --anchor` concludes from them.
//!
//! A chain proves that no record *inside* the trail was changed; it cannot show that the
//! newest records were cut off its end, or that the whole trail was swapped for another
//! valid one. A checkpoint line that left the host when it was written (the log stream,
//! stdout) can: the trail must still hold a record at its `seq` with exactly its `mac`.
//! With the key, the anchor itself is authenticated too (an attacker on the host cannot
//! forge one); without it, an anchor is only as good as the place it was kept.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::MacKey;
use super::record::{CHECKPOINT, unseal};

/// A checkpoint record taken as an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The replica whose trail it belongs to.
    pub instance: String,
    /// Its own `seq` in that trail.
    pub seq: u64,
    /// When it was written.
    pub ts: String,
    /// Its own `mac`: the trail's record at `seq` must have exactly this one.
    pub mac: String,
    /// Its `prev` (the `mac` of the record before it).
    prev: String,
    /// Its bytes without `mac` (what the `mac` covers, after `prev`).
    unsealed: String,
}

impl Anchor {
    /// The anchor in a sealed `checkpoint` line, `None` when the line is not one (another
    /// kind of record, or a checkpoint that does not name the record before it).
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (unsealed, mac) = unseal(line)?;
        let value: Value = serde_json::from_str(line).ok()?;
        if value["kind"] != CHECKPOINT {
            return None;
        }
        let seq = value["seq"].as_u64()?;
        let prev = value["prev"].as_str()?;
        if value["lastSeq"].as_u64() != seq.checked_sub(1) || value["lastMac"] != prev {
            return None;
        }
        Some(Self {
            instance: value["instance"].as_str()?.to_owned(),
            seq,
            ts: value["ts"].as_str().unwrap_or("-").to_owned(),
            mac: mac.to_owned(),
            prev: prev.to_owned(),
            unsealed,
        })
    }

    /// Whether its `mac` is right for its bytes under `key` (with the HMAC key: it was
    /// written by a holder of the key, not forged).
    pub fn genuine(&self, key: &MacKey) -> bool {
        key.mac(&self.prev, &self.unsealed) == self.mac
    }
}

/// The anchors on the lines of `reader`: checkpoint records as the trail or stdout holds
/// them, or JSON log lines of sipgw's log stream carrying one in their `checkpoint` field
/// (at the top, as `serve` logs, or under `fields`). Other lines are skipped.
pub fn read(reader: impl BufRead) -> std::io::Result<Vec<Anchor>> {
    let mut anchors = Vec::new();
    for line in reader.split(b'\n') {
        let line = line?;
        let Ok(line) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Some(anchor) = Anchor::parse(line) {
            anchors.push(anchor);
            continue;
        }
        let Ok(log) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let field = log
            .get("checkpoint")
            .or_else(|| log.get("fields").and_then(|f| f.get("checkpoint")));
        if let Some(anchor) = field.and_then(Value::as_str).and_then(Anchor::parse) {
            anchors.push(anchor);
        }
    }
    Ok(anchors)
}

/// The anchors of `--anchor` arguments: each is a checkpoint line itself (it starts with
/// `{`) or a file of lines. An argument that yields none is an error, naming it.
pub fn load(arguments: &[String]) -> Result<Vec<Anchor>, String> {
    let mut anchors = Vec::new();
    for argument in arguments {
        let found = if argument.trim_start().starts_with('{') {
            Anchor::parse(argument.trim())
                .map(|anchor| vec![anchor])
                .ok_or_else(|| "--anchor: the line given is not a checkpoint record".to_owned())?
        } else {
            let path = Path::new(argument);
            std::fs::File::open(path)
                .and_then(|file| read(BufReader::new(file)))
                .map_err(|e| format!("--anchor {}: {e}", path.display()))?
        };
        if found.is_empty() {
            return Err(format!(
                "--anchor {argument}: no checkpoint record in it (neither a checkpoint line nor a \
                 log line with a `checkpoint` field)"
            ));
        }
        anchors.extend(found);
    }
    Ok(anchors)
}

/// What a trail's files hold that an anchor is checked against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    /// The `instance` of its v2 records.
    pub instances: BTreeSet<String>,
    /// `seq` of its first and last record.
    pub first_seq: Option<u64>,
    /// `seq` of its last record.
    pub last_seq: Option<u64>,
    /// The `mac`s of its records at the `seq`s asked for.
    pub macs: BTreeMap<u64, Vec<String>>,
}

/// Reads `files` (one trail, in chain order) for what [`Held`] says, keeping the `mac`s of
/// the records at `seqs`. Lines that are not records are skipped: `verify` reports them.
pub fn held(files: &[PathBuf], seqs: &BTreeSet<u64>) -> std::io::Result<Held> {
    let mut held = Held::default();
    for file in files {
        for line in BufReader::new(std::fs::File::open(file)?).split(b'\n') {
            let line = line?;
            let Some((seq, value)) = std::str::from_utf8(&line)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .and_then(|value| Some((value["seq"].as_u64()?, value)))
            else {
                continue;
            };
            held.first_seq.get_or_insert(seq);
            held.last_seq = Some(seq);
            if let Some(instance) = value["instance"].as_str() {
                held.instances.insert(instance.to_owned());
            }
            if seqs.contains(&seq)
                && let Some(mac) = value["mac"].as_str()
            {
                held.macs.entry(seq).or_default().push(mac.to_owned());
            }
        }
    }
    Ok(held)
}

/// The latest anchor (highest `seq`) of one of `instances`; anchors of other replicas
/// are ignored.
pub fn latest<'a>(anchors: &'a [Anchor], instances: &BTreeSet<String>) -> Option<&'a Anchor> {
    anchors
        .iter()
        .filter(|anchor| instances.contains(&anchor.instance))
        .max_by_key(|anchor| anchor.seq)
}

/// The check of one trail against the anchors given: the latest anchor of the trail's
/// instance, and what the trail's files say to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The latest anchor of the trail's instance, judged.
    Judged(Anchor, Verdict),
    /// No anchor given is of this trail's instance (or its records name none: written
    /// before format v2); the message says which.
    NoneOfThisTrail(String),
}

impl Check {
    /// What it means for the reviewer.
    pub fn explain(&self, keyed: bool) -> String {
        match self {
            Self::Judged(anchor, verdict) => verdict.explain(anchor, keyed),
            Self::NoneOfThisTrail(why) => why.clone(),
        }
    }

    /// Whether the anchor shows records cut, replaced or forged (the trail fails).
    pub fn failed(&self) -> bool {
        matches!(
            self,
            Self::Judged(
                _,
                Verdict::NotGenuine | Verdict::EndsBefore { .. } | Verdict::Differs
            )
        )
    }
}

/// Checks one trail's `files` (in chain order) against `anchors`.
pub fn check(files: &[PathBuf], anchors: &[Anchor], key: &MacKey) -> std::io::Result<Check> {
    let seqs = anchors.iter().map(|anchor| anchor.seq).collect();
    let held = held(files, &seqs)?;
    let Some(latest) = latest(anchors, &held.instances) else {
        let instances: Vec<&str> = held.instances.iter().map(String::as_str).collect();
        return Ok(Check::NoneOfThisTrail(if instances.is_empty() {
            format!(
                "none of the {} anchor(s) given can be checked: the trail's records name no \
                 instance (written before format v2)",
                anchors.len()
            )
        } else {
            format!(
                "none of the {} anchor(s) given is of this trail's instance ({})",
                anchors.len(),
                instances.join(", ")
            )
        }));
    };
    let verdict = judge(latest, &held, key);
    Ok(Check::Judged(latest.clone(), verdict))
}

/// What the anchor says about the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The trail holds the anchor's record: nothing up to it was cut or replaced.
    Held,
    /// The anchor's own `mac` is wrong for its bytes (under the key given).
    NotGenuine,
    /// The trail ends before the anchor: records were deleted from its end.
    EndsBefore {
        /// Where the trail now ends (`None`: it holds no record).
        last_seq: Option<u64>,
    },
    /// The trail holds another record at the anchor's `seq`.
    Differs,
    /// The files start after the anchor (an archived tail): they cannot show it.
    StartsAfter {
        /// Where they start.
        first_seq: u64,
    },
}

/// Checks `anchor` against what a trail (whose chain verified) holds.
pub fn judge(anchor: &Anchor, held: &Held, key: &MacKey) -> Verdict {
    if !anchor.genuine(key) {
        return Verdict::NotGenuine;
    }
    match (held.first_seq, held.last_seq) {
        (_, last_seq) if last_seq.is_none_or(|last| last < anchor.seq) => {
            Verdict::EndsBefore { last_seq }
        }
        (Some(first_seq), _) if first_seq > anchor.seq => Verdict::StartsAfter { first_seq },
        _ if held
            .macs
            .get(&anchor.seq)
            .is_some_and(|macs| macs.contains(&anchor.mac)) =>
        {
            Verdict::Held
        }
        _ => Verdict::Differs,
    }
}

impl Verdict {
    /// What it means, for the reviewer (`key` says whether the anchor's `mac` was checked
    /// with the HMAC key).
    pub fn explain(&self, anchor: &Anchor, keyed: bool) -> String {
        let seq = anchor.seq;
        match self {
            Self::Held => format!(
                "the trail holds the anchor of instance {} at seq {seq} (written {}): nothing up to it was cut or replaced",
                anchor.instance, anchor.ts
            ),
            Self::NotGenuine if keyed => {
                "the anchor is not genuine: its mac does not match the key".to_owned()
            }
            Self::NotGenuine => {
                "the anchor is not genuine: its mac does not match its own bytes (it was altered)"
                    .to_owned()
            }
            Self::EndsBefore {
                last_seq: Some(last),
            } => format!(
                "the trail ends at seq {last}, but the anchor shows seq {seq} was written: records were deleted from its end"
            ),
            Self::EndsBefore { last_seq: None } => format!(
                "the trail holds no record, but the anchor shows seq {seq} was written: its records were deleted"
            ),
            Self::Differs => format!(
                "the record at seq {seq} differs from the anchor: the trail was replaced or rewritten"
            ),
            Self::StartsAfter { first_seq } => format!(
                "these files start at seq {first_seq}, after the anchor's seq {seq}: they cannot show it (give the files that hold it)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::GENESIS;
    use crate::audit::record::{Envelope, checkpoint_json, seal};

    fn checkpoint(seq: u64, prev: &str, key: &MacKey) -> String {
        let envelope = Envelope {
            seq,
            ts: "2026-12-07T10:00:00.000Z",
            instance: "gw-1",
        };
        let unsealed = checkpoint_json(envelope, prev);
        seal(&unsealed, &key.mac(prev, &unsealed))
    }

    #[test]
    fn anchors_are_read_from_records_and_from_log_lines() {
        let line = checkpoint(5, &"a".repeat(64), &MacKey::Plain);
        let log =
            serde_json::json!({"level": "INFO", "message": "audit checkpoint", "checkpoint": line});
        let nested =
            serde_json::json!({"fields": {"message": "audit checkpoint", "checkpoint": line}});
        let text = format!("not json\n{line}\n{log}\n{nested}\n{{\"kind\":\"outcome\"}}\n");
        let anchors = read(text.as_bytes()).unwrap();
        assert_eq!(anchors.len(), 3);
        assert!(anchors.iter().all(|a| a.seq == 5 && a.instance == "gw-1"));
        assert!(anchors[0].genuine(&MacKey::Plain));
    }

    #[test]
    fn a_checkpoint_that_does_not_name_the_record_before_it_is_no_anchor() {
        let line = checkpoint(5, GENESIS, &MacKey::Plain);
        assert!(Anchor::parse(&line).is_some());
        let wrong = line.replace("\"lastSeq\":4", "\"lastSeq\":3");
        assert!(Anchor::parse(&wrong).is_none());
    }

    #[test]
    fn the_verdicts() {
        let key = MacKey::from_file_bytes(b"anchor-test-key-0123456789").unwrap();
        let anchor = Anchor::parse(&checkpoint(5, GENESIS, &key)).unwrap();
        let held = |first, last, mac: &str| Held {
            instances: BTreeSet::from(["gw-1".to_owned()]),
            first_seq: Some(first),
            last_seq: Some(last),
            macs: BTreeMap::from([(5, vec![mac.to_owned()])]),
        };
        assert_eq!(
            judge(&anchor, &held(1, 9, &anchor.mac), &key),
            Verdict::Held
        );
        assert_eq!(
            judge(&anchor, &held(1, 4, &anchor.mac), &key),
            Verdict::EndsBefore { last_seq: Some(4) }
        );
        assert_eq!(
            judge(&anchor, &held(1, 9, &"0".repeat(64)), &key),
            Verdict::Differs
        );
        assert_eq!(
            judge(&anchor, &held(7, 9, &anchor.mac), &key),
            Verdict::StartsAfter { first_seq: 7 }
        );
        // Forged without the key: refused with it, whatever the trail holds.
        let forged = Anchor::parse(&checkpoint(5, GENESIS, &MacKey::Plain)).unwrap();
        assert_eq!(
            judge(&forged, &held(1, 9, &forged.mac), &key),
            Verdict::NotGenuine
        );
        assert!(
            Verdict::NotGenuine
                .explain(&forged, true)
                .contains("its mac does not match the key")
        );
    }
}
