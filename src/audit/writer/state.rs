//! The state file beside the trail (`<stem>.state`): how far the trail was written, so
//! that a restart can tell a new trail from one whose files were removed or cut short
//! (issue 11, finding 5).
//!
//! It holds the last record's `seq` and `mac` the writer knows durable, and whether the
//! writer stopped because the live file was tampered with. It is rewritten in place (one
//! `pwrite` of a fixed-size, space-padded JSON object, so a shorter value never leaves a
//! longer one's tail behind) after each durable batch, and synced at rotation and
//! shutdown. It never claims more than the trail holds durably: with `fsync = "interval"`
//! it follows each sync, with `"never"` only rotations and shutdown. After a crash it may
//! lag behind the trail, which is accepted: only a trail that ends *before* it (or at its
//! `seq` with another `mac`) is a loss.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tamper::Tamper;
use super::trail::open_created;

/// Bytes of the state file: room for the JSON object, padded with spaces.
const SIZE: usize = 256;

/// What the state file remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct State {
    /// Format version.
    pub(super) v: u32,
    /// `seq` of the last record known durable (0: none yet).
    pub(super) seq: u64,
    /// `mac` of that record (the genesis value when none).
    pub(super) mac: String,
    /// Set when the writer stopped because the live file was tampered with: a restart must
    /// not carry on as if nothing happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) tampered: Option<Tamper>,
}

/// `<dir>/<stem>.state` for the trail `<dir>/<stem>.jsonl` (not `.jsonl`, so that
/// `sipgw audit verify DIR` does not take it for a trail file).
pub(super) fn path_of(trail: &Path) -> PathBuf {
    trail.with_extension("state")
}

/// The state, `None` when there is no state file (a new trail, or one written by a sipgw
/// from before the state file). An unreadable state file is an error: it cannot be told
/// from a damaged one.
pub(super) fn load(path: &Path) -> std::io::Result<Option<State>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the audit state file {} is not readable as a state file; check the trail \
                 with `sipgw audit verify`, then remove the state file to start over",
                path.display()
            ),
        )
    })
}

/// Writes `state` over the state file (created with `mode`), and syncs it when `durable`.
pub(super) fn store(path: &Path, state: &State, mode: u32, durable: bool) -> std::io::Result<()> {
    let mut text = serde_json::to_string(state).expect("the state always serializes");
    if text.len() >= SIZE {
        return Err(std::io::Error::other("audit state does not fit its file"));
    }
    text.extend(std::iter::repeat_n(' ', SIZE - 1 - text.len()));
    text.push('\n');
    let mut options = OpenOptions::new();
    options.write(true);
    let file = open_created(path, &options, mode)?;
    file.write_all_at(text.as_bytes(), 0)?;
    if file.metadata()?.len() != SIZE as u64 {
        file.set_len(SIZE as u64)?;
    }
    if durable {
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_a_shorter_value_leaves_no_tail() {
        let dir = std::env::temp_dir().join(format!("sipgw-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_of(&dir.join("audit.jsonl"));
        assert_eq!(path, dir.join("audit.state"));
        assert_eq!(load(&path).unwrap(), None);
        let long = State {
            v: 1,
            seq: u64::MAX,
            mac: "f".repeat(64),
            tampered: Some(Tamper::Truncated),
        };
        store(&path, &long, 0o600, true).unwrap();
        let short = State {
            v: 1,
            seq: 7,
            mac: "a".repeat(64),
            tampered: None,
        };
        store(&path, &short, 0o600, false).unwrap();
        assert_eq!(load(&path).unwrap(), Some(short));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
        std::fs::write(&path, "{\"v\":1,\"seq\":").unwrap();
        assert!(load(&path).is_err(), "a damaged state file is not ignored");
    }
}
