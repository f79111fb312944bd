//! The trail's files: opening the current file and finding the chain's head in it (or in
//! the newest rotated file), the start-up check against the state file, a new chain after
//! an operator's decision, rotation, and the modes of what is created.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::state::{self, State};
use super::tamper::Tamper;
use super::{TAIL_BYTES, WriterConfig};
use crate::audit::chain::GENESIS;
use crate::audit::record::{CHECKPOINT, Envelope, discontinuity_json, seal, unseal};

/// `(seq, mac)` of a record.
type Head = (u64, String);

/// The open trail file and the chain's head.
pub(super) struct Trail {
    /// Opened for appending.
    pub(super) file: File,
    /// Bytes known durable (or written, with `fsync = "never"`).
    pub(super) len: u64,
    /// `seq` of the last record.
    pub(super) seq: u64,
    /// `mac` of the last record (the next `prev`).
    pub(super) prev: String,
    /// The file may hold bytes past `len` (a failed write whose cut-back failed too): they
    /// are cut before anything else is written.
    pub(super) needs_cut: bool,
    /// The directory must be synced before the next write (a new file's entry, or a
    /// rename, is not durable yet).
    pub(super) dir_dirty: bool,
    /// A rotation renamed the current file but could not open the new one yet: the path is
    /// expected to be empty (not a tampering), and the rename is not repeated.
    pub(super) renamed_away: bool,
    /// Whether the trail has a state file (not when it is a device).
    pub(super) keeps_state: bool,
    /// Set once the live file was found unlinked, replaced or altered: nothing more is
    /// written until a restart (see `open`).
    pub(super) halted: Option<Tamper>,
    /// The last state file update failed (logged once until one succeeds).
    pub(super) state_failing: bool,
    /// Records written since the last checkpoint (by this run).
    pub(super) unanchored: u64,
    /// When the first of them was written: a checkpoint is due one
    /// `checkpoint_interval` later.
    pub(super) unanchored_since: Option<Instant>,
    /// Checkpoint lines written but not yet synced (`fsync = "interval"`): they go to the
    /// log stream once durable.
    pub(super) unsent: Vec<String>,
    /// The last batch's buffer, cleared and reused by the next one (no allocation per
    /// batch for its lines).
    pub(super) buffer: Vec<u8>,
}

impl Trail {
    /// Opens the trail at `config.path`, finding the chain's head in the current file or,
    /// when it has none, in the newest rotated file beside it. A last line without its line
    /// end was never acknowledged (records are acknowledged after the write), so it is cut
    /// off.
    ///
    /// When the state file says more was written than the trail now holds (or that the
    /// running gateway stopped on a tampered file), the trail is refused unless
    /// `allow_new_chain` is set; then the chain goes on in a new file whose first record
    /// names the discontinuity, and whatever was at the path is kept beside it. Returns
    /// what was found missing in that case.
    pub(super) fn open(config: &WriterConfig) -> std::io::Result<(Self, Option<Tamper>)> {
        let path = &config.path;
        create_dir(path, config.file_mode)?;
        let state_path = state::path_of(path);
        let mut current = match OpenOptions::new().append(true).read(true).open(path) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        // A trail that is not a regular file (a device, in tests of a full disk) has no
        // state beside it: nothing could be removed from it.
        let keeps_state = match &current {
            Some(file) => file.metadata()?.is_file(),
            None => true,
        };
        if let Some(file) = current.as_ref().filter(|_| keeps_state) {
            narrow_mode(file, path, config.file_mode)?;
        }
        let remembered = if keeps_state {
            state::load(&state_path)?
        } else {
            None
        };
        let (mut len, mut complete_len, mut own_head, mut anchored) = (0, 0, None, true);
        if let Some(file) = current.as_mut() {
            len = file.metadata()?.len();
            (own_head, complete_len, anchored) = read_tail(file, len)?;
        }
        let mut head = own_head.clone();
        if head.is_none()
            && let Some(rotated) = newest_rotated(path)?
        {
            let mut old = File::open(&rotated)?;
            let old_len = old.metadata()?.len();
            (head, _, anchored) = read_tail(&mut old, old_len)?;
        }
        let existed = current.is_some();
        let finding = remembered.as_ref().and_then(|s| finding(s, head.as_ref()));
        let mut started_after = None;
        let mut trail = match (finding, remembered) {
            (Some(kind), Some(state)) => {
                if !config.allow_new_chain {
                    return Err(refusal(&state_path, &state, kind, head.as_ref()));
                }
                if current.is_some() && len > 0 {
                    let seq = own_head.as_ref().map_or(0, |(seq, _)| *seq);
                    let aside = rotated_name(path, seq, SystemTime::now());
                    std::fs::rename(path, &aside)?;
                    tracing::warn!(kept = %aside.display(), "audit: the damaged trail file is kept beside the new one");
                }
                started_after = Some(kind);
                new_chain(config, &state, kind, head.as_ref().map(|(seq, _)| *seq))?
            }
            _ => {
                if config.allow_new_chain {
                    tracing::warn!(
                        "audit.allow_new_chain is set, but the trail is whole; remove it"
                    );
                }
                let (seq, prev) = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
                let file = match current {
                    Some(file) => {
                        if complete_len < len {
                            tracing::warn!(path = %path.display(), cut = len - complete_len, "audit trail ends with a partial record; cutting it off");
                            file.set_len(complete_len)?;
                            len = complete_len;
                        }
                        file
                    }
                    None => open_created(path, &append_read(), config.file_mode)?,
                };
                Self {
                    file,
                    len,
                    seq,
                    prev,
                    needs_cut: false,
                    dir_dirty: !existed,
                    renamed_away: false,
                    keeps_state,
                    halted: None,
                    state_failing: false,
                    // A trail that does not end with a checkpoint (the last run crashed, or
                    // wrote none) gets one as soon as one is due.
                    unanchored: u64::from(!anchored),
                    unanchored_since: (!anchored).then(Instant::now),
                    unsent: Vec::new(),
                    buffer: Vec::new(),
                }
            }
        };
        // Not fatal: on a full disk the gateway starts and refuses changes until the disk
        // has room again, as it does while running; the failure is logged.
        if let Err(error) = trail.store_state(config, true) {
            tracing::warn!(%error, "audit state file could not be written; a restart cannot tell how far the trail was written");
            trail.state_failing = true;
        }
        if trail.dir_dirty {
            sync_dir(path)?;
            trail.dir_dirty = false;
        }
        Ok((trail, started_after))
    }

    /// Remembers the chain's head in the state file.
    pub(super) fn store_state(&self, config: &WriterConfig, durable: bool) -> std::io::Result<()> {
        if !self.keeps_state {
            return Ok(());
        }
        let state = State {
            v: 1,
            seq: self.seq,
            mac: self.prev.clone(),
            tampered: self.halted,
        };
        state::store(
            &state::path_of(&config.path),
            &state,
            config.file_mode,
            durable,
        )
    }
}

/// What is missing from the trail, compared with what the state file remembers.
fn finding(state: &State, head: Option<&Head>) -> Option<Tamper> {
    if let Some(kind) = state.tampered {
        return Some(kind);
    }
    match head {
        None if state.seq == 0 => None,
        None => Some(Tamper::Missing),
        // The state file lags after a crash; more records than it knows are fine.
        Some((seq, _)) if *seq > state.seq => None,
        Some((seq, mac)) if *seq == state.seq => (*mac != state.mac).then_some(Tamper::Replaced),
        Some(_) => Some(Tamper::Truncated),
    }
}

fn refusal(state_path: &Path, state: &State, kind: Tamper, head: Option<&Head>) -> std::io::Error {
    let found = match (kind, head) {
        (Tamper::Missing, _) => "its files are gone".to_owned(),
        (Tamper::Truncated, Some((seq, _))) => format!("it now ends at seq {seq}"),
        (Tamper::Replaced, Some((seq, _))) => {
            format!("its record seq {seq} is not the one that was written")
        }
        (Tamper::Unlinked | Tamper::Extended | Tamper::Truncated | Tamper::Replaced, _) => {
            format!("the running gateway found the live file {kind} and stopped")
        }
    };
    std::io::Error::other(format!(
        "the audit trail was written up to seq {} (state file {}), but {found} ({kind}); \
         sipgw does not start a new chain unnoticed. Check the trail with `sipgw audit \
         verify`, then set audit.allow_new_chain = true for one start: the chain continues \
         in a new file that begins with a discontinuity record",
        state.seq,
        state_path.display(),
    ))
}

/// Starts the new current file with a `discontinuity` record that continues the chain
/// from what the state file remembers and says what was found.
fn new_chain(
    config: &WriterConfig,
    state: &State,
    kind: Tamper,
    found_seq: Option<u64>,
) -> std::io::Result<Trail> {
    let path = &config.path;
    let mut file = open_created(path, &append_read(), config.file_mode)?;
    let seq = state.seq + 1;
    let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let envelope = Envelope {
        seq,
        ts: &ts,
        instance: &config.instance,
    };
    let unsealed = discontinuity_json(envelope, kind.as_str(), &state.mac, found_seq);
    let mac = config.key.mac(&state.mac, &unsealed);
    let line = format!("{}\n", seal(&unsealed, &mac));
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    tracing::error!(
        detected = kind.as_str(),
        last_seq = state.seq,
        found_seq,
        path = %path.display(),
        "audit: a new chain starts with a discontinuity record (audit.allow_new_chain); remove the setting again"
    );
    Ok(Trail {
        file,
        len: line.len() as u64,
        seq,
        prev: mac,
        needs_cut: false,
        dir_dirty: true,
        renamed_away: false,
        keeps_state: true,
        halted: None,
        state_failing: false,
        // The discontinuity is worth an anchor as soon as one is due.
        unanchored: 1,
        unanchored_since: Some(Instant::now()),
        unsent: Vec::new(),
        buffer: Vec::new(),
    })
}

fn append_read() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.append(true).read(true);
    options
}

/// Opens `path` with `options`, creating it first with exactly `mode` (the umask does not
/// widen or narrow it) when it does not exist. An existing file (the state file, after
/// every batch) is opened with one `open`; only a missing one costs a second.
pub(super) fn open_created(path: &Path, options: &OpenOptions, mode: u32) -> std::io::Result<File> {
    match options.open(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        opened => return opened,
    }
    let mut create = options.clone();
    create.create_new(true).mode(mode);
    match create.open(path) {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(mode))?;
            Ok(file)
        }
        // Created by someone else in between: opened as it is, as above.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => options.open(path),
        Err(error) => Err(error),
    }
}

/// Takes away what an existing trail file allows beyond `mode` (a file written by an older
/// release, or by hand, may be world-readable); never adds a permission an operator took
/// away.
fn narrow_mode(file: &File, path: &Path, mode: u32) -> std::io::Result<()> {
    let current = file.metadata()?.permissions().mode() & 0o777;
    let narrowed = current & mode;
    if narrowed != current {
        file.set_permissions(Permissions::from_mode(narrowed))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:04o}"),
            now = format!("{narrowed:04o}"),
            "audit: the trail file allowed more than audit.file_mode; narrowed"
        );
    }
    Ok(())
}

/// Creates the trail's directory when missing: `0700`, or `0750` when files are `0640`
/// (a reviewers' group must be able to enter it).
fn create_dir(path: &Path, file_mode: u32) -> std::io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.exists() {
        return Ok(());
    }
    let mode = if file_mode & 0o040 != 0 { 0o750 } else { 0o700 };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// The last complete record of a file, `(seq, mac)`, the length up to its line end (0 when
/// the file holds no complete line: a crash during its very first write), and whether that
/// record is a checkpoint (or there is none).
pub(super) fn read_tail(file: &mut File, len: u64) -> std::io::Result<(Option<Head>, u64, bool)> {
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
        if start == 0 {
            return Ok((None, 0, true));
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the audit trail ends with a line longer than any record; run `sipgw audit verify` on it",
        ));
    };
    let complete = &tail[..last_newline];
    let line_start = complete
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = std::str::from_utf8(&complete[line_start..]).ok();
    let parsed = line.and_then(|line| {
        let (_, mac) = unseal(line)?;
        let record = serde_json::from_str::<serde_json::Value>(line).ok()?;
        let seq = record["seq"].as_u64()?;
        Some(((seq, mac.to_owned()), record["kind"] == CHECKPOINT))
    });
    match parsed {
        Some((head, anchored)) => Ok((Some(head), start + last_newline as u64 + 1, anchored)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the audit trail's last line is not a sealed record; run `sipgw audit verify` on it",
        )),
    }
}

/// Rotated files are `<stem>-<last seq, 20 digits>-<time>.jsonl` beside `<stem>.jsonl`:
/// the sequence number makes names unique and sort in chain order whatever the clock does,
/// and they sort before the current file.
pub(super) fn rotated_name(path: &Path, last_seq: u64, at: SystemTime) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
    let stamp = humantime::format_rfc3339_millis(at)
        .to_string()
        .replace(':', "-");
    path.with_file_name(format!("{stem}-{last_seq:020}-{stamp}.jsonl"))
}

/// The rotated files of the trail at `path`, oldest first (by name: the last seq).
pub fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path
        .file_stem()
        .map(|s| format!("{}-", s.to_string_lossy()))
        .unwrap_or_default();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&stem) && n.ends_with(".jsonl")
            })
        })
        .collect();
    rotated.sort();
    Ok(rotated)
}

fn newest_rotated(path: &Path) -> std::io::Result<Option<PathBuf>> {
    Ok(rotated_files(path)?.pop())
}

/// Renames the full file with its rotation time and starts a new one; the chain simply
/// continues in it. The directory is synced before the next write (`dir_dirty`), which makes
/// both the rename and the new file's entry durable. A rename done by an earlier, failed
/// attempt is not repeated.
pub(super) fn rotate(trail: &mut Trail, config: &WriterConfig) -> std::io::Result<()> {
    let path = &config.path;
    trail.file.sync_data()?;
    if !trail.renamed_away {
        let rotated = rotated_name(path, trail.seq, SystemTime::now());
        std::fs::rename(path, &rotated)?;
        trail.renamed_away = true;
        tracing::info!(rotated = %rotated.display(), "audit trail rotated");
    }
    trail.dir_dirty = true;
    trail.file = open_created(path, &append_read(), config.file_mode)?;
    trail.renamed_away = false;
    trail.len = 0;
    Ok(())
}

/// Makes the directory's entries (a new file, a rename) durable.
pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
