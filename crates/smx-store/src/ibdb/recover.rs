//! Recovery: reads the log files in sequence order, judges where each
//! one's valid frames end (the rules are in the [parent module](super)'s
//! table), replays the records and builds the committer's bookkeeping.
//!
//! Files are read with positioned reads; a frame is read only after its
//! length has been checked against
//! [`MAX_FRAME_PAYLOAD`](super::format::MAX_FRAME_PAYLOAD) and against the
//! bytes left in the file, so damaged lengths never cause large
//! allocations.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Damage;
use super::format::{
    FORMAT_VERSION, FRAME_BATCH, FRAME_HEADER_LEN, FRAME_MAGIC, FileHeader, FrameError, FrameHead,
    HEADER_LEN, HeaderError, Outcome, Record, check_frame, records,
};
use super::writer::{CORRUPT_DIR, FileTrack, LOCK_NAME, Prev};
use super::{IbdbError, OpenTransaction, Recovery, RecoveryWarning};
use crate::envelope::{Recipient, Transaction};
use crate::id::{RecipientId, TransactionId};

/// Size of the blocks read when scanning for zeros or frames.
const SCAN_BLOCK: usize = 64 << 10;

/// The result of recovery, for the committer.
#[derive(Debug)]
pub(super) struct Scanned {
    pub(super) recovery: Recovery,
    /// The files kept, with their open-transaction counts.
    pub(super) files: BTreeMap<u64, FileTrack>,
    /// Open transactions and the files they have records in.
    pub(super) open_tas: HashMap<TransactionId, Vec<u64>>,
    /// The newest file, which the next file's header refers to.
    pub(super) prev: Prev,
    /// The largest sequence number seen, including files in `corrupt/`.
    pub(super) max_seq: u64,
}

/// Recovers the log in `dir` (locked by the caller).
pub(super) fn recover(dir: &Path, dir_file: &File) -> Result<Scanned, IbdbError> {
    let mut recovery = Recovery::default();
    let (mut names, max_seq) = list(dir, &mut recovery.warnings)?;

    // A newest file without a byte of content was being created when the
    // system stopped; nothing in it was ever acknowledged.
    while let Some((_, path)) = names.last() {
        let file = open(path)?;
        let len = file_len(&file, path)?;
        if !all_zero(&file, 0, len).map_err(|e| IbdbError::io(path, "read", e))? {
            break;
        }
        fs::remove_file(path).map_err(|e| IbdbError::io(path, "remove empty file", e))?;
        dir_file
            .sync_all()
            .map_err(|e| IbdbError::io(dir, "fsync directory", e))?;
        recovery
            .warnings
            .push(RecoveryWarning::EmptyFileRemoved { path: path.clone() });
        names.pop();
    }

    // Headers first: each file's end may be recorded in the next one's.
    let mut metas = Vec::with_capacity(names.len());
    for (seq, path) in names {
        let file = open(&path)?;
        let mut hb = [0u8; HEADER_LEN];
        let n = read_upto(&file, 0, &mut hb).map_err(|e| IbdbError::io(&path, "read", e))?;
        let header = match FileHeader::decode(&hb[..n]) {
            Ok(h) if h.seq == seq => h,
            Ok(h) => {
                return Err(move_aside(
                    dir,
                    dir_file,
                    &path,
                    0,
                    Damage::SeqMismatch { header: h.seq },
                ));
            }
            Err(HeaderError::Version(version)) => {
                return Err(IbdbError::UnsupportedVersion {
                    path,
                    offset: 0,
                    version,
                });
            }
            Err(e) => return Err(move_aside(dir, dir_file, &path, 0, Damage::Header(e))),
        };
        metas.push((seq, path, header));
    }

    let mut replay = Replay::default();
    let mut files = BTreeMap::new();
    let mut prev = Prev::default();
    let mut pins = Vec::new();
    let count = metas.len();
    for i in 0..count {
        let (seq, path, _) = &metas[i];
        let next = metas.get(i + 1).map(|(_, _, h)| h);
        let role = match next {
            None => Role::Newest,
            Some(h) if h.prev_seq == *seq => Role::Recorded(h.prev_len),
            Some(_) => Role::Older,
        };
        let file = open(path)?;
        let len = file_len(&file, path)?;
        let mut scan = FileScan {
            file: &file,
            path,
            seq: *seq,
            len,
            replay: &mut replay,
            warnings: &mut recovery.warnings,
        };
        let end = match scan.run(role) {
            Ok(end) => end,
            Err(Fail::Io(op, e)) => return Err(IbdbError::io(path, op, e)),
            Err(Fail::Version(offset, version)) => {
                return Err(IbdbError::UnsupportedVersion {
                    path: path.clone(),
                    offset,
                    version,
                });
            }
            Err(Fail::Damage(offset, detail)) => {
                drop(file);
                return Err(move_aside(dir, dir_file, path, offset, detail));
            }
        };
        recovery.files_read += 1;
        files.insert(
            *seq,
            FileTrack {
                path: path.clone(),
                open: 0,
                outlive: BTreeSet::new(),
            },
        );
        if end.tail
            && let Some((next_seq, _, _)) = metas.get(i + 1)
        {
            // Only a Recorded file has a tail here: the next file explains it.
            pins.push((*next_seq, *seq));
        }
        prev = Prev {
            seq: *seq,
            valid_end: end.valid_end,
            tail: end.tail,
        };
    }
    for (m, p) in pins
        .into_iter()
        .chain(std::mem::take(&mut replay.close_pins))
    {
        if let Some(t) = files.get_mut(&m) {
            t.outlive.insert(p);
        }
    }
    recovery.records = replay.records;
    recovery.ignored_records = replay.ignored;
    let open_tas = replay.finish(&mut files, &mut recovery);
    Ok(Scanned {
        recovery,
        files,
        open_tas,
        prev,
        max_seq,
    })
}

/// How a file's end is judged.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The newest file: it may end in a torn write.
    Newest,
    /// An older file whose end the next file's header records.
    Recorded(u64),
    /// An older file whose end is not recorded (the next file was removed
    /// or set aside): it must end cleanly.
    Older,
}

/// Where a file's valid frames end.
#[derive(Debug)]
struct End {
    valid_end: u64,
    /// Non-zero bytes follow `valid_end`.
    tail: bool,
}

/// Why reading stopped.
#[derive(Debug)]
enum Stop {
    /// At the end of the file.
    Eof,
    /// At zeros that run to the end of the file.
    Zeros,
    /// At the end recorded by the next file.
    Limit,
    /// At bytes that are not a valid frame.
    Bad(FrameError),
}

#[derive(Debug)]
enum Fail {
    Io(&'static str, io::Error),
    Version(u64, u8),
    Damage(u64, Damage),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io("read", e)
    }
}

struct FileScan<'a> {
    file: &'a File,
    path: &'a Path,
    seq: u64,
    len: u64,
    replay: &'a mut Replay,
    warnings: &'a mut Vec<RecoveryWarning>,
}

impl FileScan<'_> {
    fn run(&mut self, role: Role) -> Result<End, Fail> {
        let limit = match role {
            Role::Recorded(end) => Some(end),
            Role::Newest | Role::Older => None,
        };
        let (pos, stop) = self.read_frames(limit)?;
        match (role, stop) {
            (Role::Recorded(_), Stop::Limit) => {
                let tail = nonzero_extent(self.file, pos, self.len)?;
                if tail > 0 {
                    self.warnings.push(RecoveryWarning::DiscardedTail {
                        path: self.path.to_path_buf(),
                        offset: pos,
                        len: tail,
                    });
                }
                Ok(End {
                    valid_end: pos,
                    tail: tail > 0,
                })
            }
            (Role::Recorded(recorded_end), Stop::Eof | Stop::Zeros) => Err(Fail::Damage(
                pos,
                Damage::BeforeRecordedEnd {
                    recorded_end,
                    error: None,
                },
            )),
            (Role::Recorded(recorded_end), Stop::Bad(error)) => Err(Fail::Damage(
                pos,
                Damage::BeforeRecordedEnd {
                    recorded_end,
                    error: Some(error),
                },
            )),
            (Role::Newest | Role::Older, Stop::Eof | Stop::Zeros | Stop::Limit) => Ok(End {
                valid_end: pos,
                tail: false,
            }),
            (Role::Newest | Role::Older, Stop::Bad(error)) => {
                if let Some(valid_frame_at) = self.find_valid_frame(pos + 1)? {
                    return Err(Fail::Damage(
                        pos,
                        Damage::DamagedFrame {
                            error,
                            valid_frame_at,
                        },
                    ));
                }
                if let Role::Older = role {
                    return Err(Fail::Damage(pos, Damage::TornTailNotNewest { error }));
                }
                let len = nonzero_extent(self.file, pos, self.len)?;
                self.warnings.push(RecoveryWarning::TornTail {
                    path: self.path.to_path_buf(),
                    offset: pos,
                    len,
                });
                Ok(End {
                    valid_end: pos,
                    tail: len > 0,
                })
            }
        }
    }

    /// Reads and applies frames from the header on, until one of the
    /// [`Stop`] conditions; returns where it stopped.
    fn read_frames(&mut self, limit: Option<u64>) -> Result<(u64, Stop), Fail> {
        let mut pos = HEADER_LEN as u64;
        let mut buf = Vec::new();
        loop {
            if Some(pos) == limit {
                return Ok((pos, Stop::Limit));
            }
            if pos >= self.len {
                return Ok((pos, Stop::Eof));
            }
            let avail = self.len - pos;
            let mut head = [0u8; FRAME_HEADER_LEN];
            let hn = usize::try_from(avail).map_or(FRAME_HEADER_LEN, |a| a.min(FRAME_HEADER_LEN));
            self.file.read_exact_at(&mut head[..hn], pos)?;
            if head[..hn].iter().all(|&b| b == 0) {
                let stop = if all_zero(self.file, pos, self.len)? {
                    Stop::Zeros
                } else {
                    Stop::Bad(FrameError::Magic)
                };
                return Ok((pos, stop));
            }
            let fh = match FrameHead::parse(&head[..hn]) {
                Ok(h) => h,
                Err(e) => return Ok((pos, Stop::Bad(e))),
            };
            let flen = fh.frame_len() as u64;
            if flen > avail {
                return Ok((pos, Stop::Bad(FrameError::Truncated { len: fh.len })));
            }
            // flen <= MAX_FRAME_PAYLOAD + overhead and <= what the file holds.
            buf.resize(fh.frame_len(), 0);
            self.file.read_exact_at(&mut buf, pos)?;
            let payload = match check_frame(self.seq, pos, &buf) {
                Ok((_, p)) => p,
                Err(e) => return Ok((pos, Stop::Bad(e))),
            };
            if let Some(recorded_end) = limit
                && pos + flen > recorded_end
            {
                return Err(Fail::Damage(
                    pos,
                    Damage::CrossesRecordedEnd { recorded_end },
                ));
            }
            if fh.version != FORMAT_VERSION {
                return Err(Fail::Version(pos, fh.version));
            }
            if fh.kind != FRAME_BATCH {
                return Err(Fail::Damage(pos, Damage::FrameType(fh.kind)));
            }
            for r in records(payload) {
                match r {
                    Ok((_, rec)) => self.replay.apply(rec, self.seq, self.path, self.warnings),
                    Err((at, e)) => {
                        return Err(Fail::Damage(
                            pos + (FRAME_HEADER_LEN + at) as u64,
                            Damage::Record(e),
                        ));
                    }
                }
            }
            pos += flen;
        }
    }

    /// The offset of the first valid frame at or after `from`, if any.
    fn find_valid_frame(&self, from: u64) -> Result<Option<u64>, Fail> {
        let mut block = vec![0u8; SCAN_BLOCK + FRAME_HEADER_LEN];
        let mut frame = Vec::new();
        let mut start = from;
        while start + (FRAME_HEADER_LEN as u64) <= self.len {
            let n = read_upto(self.file, start, &mut block)?;
            let data = &block[..n];
            let last = n.saturating_sub(FRAME_HEADER_LEN - 1).min(SCAN_BLOCK);
            for i in 0..last {
                if data[i..i + 2] != FRAME_MAGIC || data[i + 6] != FORMAT_VERSION {
                    continue;
                }
                let Ok(head) = FrameHead::parse(&data[i..]) else {
                    continue;
                };
                let at = start + i as u64;
                if head.frame_len() as u64 > self.len - at {
                    continue;
                }
                frame.resize(head.frame_len(), 0);
                self.file.read_exact_at(&mut frame, at)?;
                if check_frame(self.seq, at, &frame).is_ok() {
                    return Ok(Some(at));
                }
            }
            start += SCAN_BLOCK as u64;
        }
        Ok(None)
    }
}

/// The replayed state of one transaction.
#[derive(Debug)]
struct TaReplay {
    order: u64,
    ta: Transaction,
    rcpts: BTreeMap<RecipientId, Recipient>,
    outcomes: BTreeMap<RecipientId, Outcome>,
    /// Files with records of it, ascending.
    files: Vec<u64>,
}

impl TaReplay {
    fn touch(&mut self, seq: u64) {
        if self.files.last() != Some(&seq) {
            self.files.push(seq);
        }
    }
}

#[derive(Debug, Default)]
struct Replay {
    tas: HashMap<TransactionId, TaReplay>,
    next_order: u64,
    records: u64,
    ignored: u64,
    /// (file of a closed record, file of that transaction's record) when
    /// they differ: the first must outlive the second.
    close_pins: Vec<(u64, u64)>,
}

impl Replay {
    fn apply(&mut self, r: Record, seq: u64, path: &Path, warnings: &mut Vec<RecoveryWarning>) {
        self.records += 1;
        match r {
            Record::Transaction(ta) => match self.tas.entry(ta.id) {
                Entry::Occupied(_) => warnings.push(RecoveryWarning::DuplicateTransaction {
                    id: ta.id,
                    path: path.to_path_buf(),
                }),
                Entry::Vacant(v) => {
                    v.insert(TaReplay {
                        order: self.next_order,
                        ta,
                        rcpts: BTreeMap::new(),
                        outcomes: BTreeMap::new(),
                        files: vec![seq],
                    });
                    self.next_order += 1;
                }
            },
            Record::Recipient(rc) => match self.tas.get_mut(&rc.id.transaction()) {
                Some(t) => {
                    t.touch(seq);
                    t.rcpts.entry(rc.id).or_insert(rc);
                }
                None => self.ignored += 1,
            },
            Record::Outcome { rcpt, outcome } => match self.tas.get_mut(&rcpt.transaction()) {
                Some(t) => {
                    t.touch(seq);
                    t.outcomes.insert(rcpt, outcome);
                }
                None => self.ignored += 1,
            },
            Record::Closed(id) => match self.tas.remove(&id) {
                Some(t) => {
                    // files[0] holds the transaction record.
                    if let Some(&origin) = t.files.first()
                        && origin != seq
                    {
                        self.close_pins.push((seq, origin));
                    }
                }
                None => self.ignored += 1,
            },
        }
    }

    /// Fills `recovery.open` and the files' open counts; returns the open
    /// transactions' files.
    fn finish(
        self,
        files: &mut BTreeMap<u64, FileTrack>,
        recovery: &mut Recovery,
    ) -> HashMap<TransactionId, Vec<u64>> {
        let mut tas: Vec<TaReplay> = self.tas.into_values().collect();
        tas.sort_by_key(|t| t.order);
        let mut open_tas = HashMap::with_capacity(tas.len());
        for t in tas {
            let found = t.rcpts.len();
            if (found as u64) < u64::from(t.ta.nrcpts) {
                recovery
                    .warnings
                    .push(RecoveryWarning::IncompleteTransaction {
                        id: t.ta.id,
                        nrcpts: t.ta.nrcpts,
                        found,
                    });
                continue;
            }
            for s in &t.files {
                if let Some(f) = files.get_mut(s) {
                    f.open += 1;
                }
            }
            open_tas.insert(t.ta.id, t.files);
            let outcomes = t.outcomes;
            let open = t
                .rcpts
                .into_values()
                .filter(|r| !outcomes.contains_key(&r.id))
                .collect();
            recovery.open.push(OpenTransaction {
                transaction: t.ta,
                open,
                done: outcomes.into_iter().collect(),
            });
        }
        open_tas
    }
}

/// The log files in `dir`, ascending, and the largest sequence number
/// also counting `corrupt/`.
fn list(
    dir: &Path,
    warnings: &mut Vec<RecoveryWarning>,
) -> Result<(Vec<(u64, PathBuf)>, u64), IbdbError> {
    let mut names = Vec::new();
    let mut max_seq = 0;
    for entry in fs::read_dir(dir).map_err(|e| IbdbError::io(dir, "list directory", e))? {
        let entry = entry.map_err(|e| IbdbError::io(dir, "list directory", e))?;
        let name = entry.file_name();
        let path = entry.path();
        match name.to_str() {
            Some(LOCK_NAME | CORRUPT_DIR) => {}
            Some(s) => match parse_name(s) {
                Some(seq) => {
                    max_seq = max_seq.max(seq);
                    names.push((seq, path));
                }
                None => warnings.push(RecoveryWarning::IgnoredFile { path }),
            },
            None => warnings.push(RecoveryWarning::IgnoredFile { path }),
        }
    }
    let corrupt = dir.join(CORRUPT_DIR);
    match fs::read_dir(&corrupt) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| IbdbError::io(&corrupt, "list directory", e))?;
                let name = entry.file_name();
                // "<seq>.ibdb" or "<seq>.ibdb.<n>"
                if let Some(seq) = name.to_str().and_then(|s| s.get(..21)).and_then(parse_name) {
                    max_seq = max_seq.max(seq);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(IbdbError::io(&corrupt, "list directory", e)),
    }
    names.sort_unstable();
    Ok((names, max_seq))
}

/// The sequence number in a file name `XXXXXXXXXXXXXXXX.ibdb` (16
/// upper-case hex digits; neither 0 nor `u64::MAX`, so that the next
/// number always exists).
fn parse_name(s: &str) -> Option<u64> {
    let hex = s.strip_suffix(".ibdb")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
        return None;
    }
    u64::from_str_radix(hex, 16)
        .ok()
        .filter(|&n| n != 0 && n != u64::MAX)
}

/// Moves a damaged file into `corrupt/` and returns the error to report.
fn move_aside(dir: &Path, dir_file: &File, path: &Path, offset: u64, detail: Damage) -> IbdbError {
    let corrupt = dir.join(CORRUPT_DIR);
    let moved = (|| -> io::Result<PathBuf> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&corrupt)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut target = corrupt.join(&name);
        let mut n = 1u32;
        while fs::symlink_metadata(&target).is_ok() {
            target = corrupt.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &target)?;
        File::open(&corrupt)?.sync_all()?;
        dir_file.sync_all()?;
        Ok(target)
    })();
    match moved {
        Ok(moved_to) => IbdbError::Corrupt {
            path: path.to_path_buf(),
            offset,
            moved_to,
            detail,
        },
        Err(e) => IbdbError::CorruptNotMoved {
            path: path.to_path_buf(),
            offset,
            detail,
            source: Arc::new(e),
        },
    }
}

fn open(path: &Path) -> Result<File, IbdbError> {
    File::open(path).map_err(|e| IbdbError::io(path, "open", e))
}

fn file_len(file: &File, path: &Path) -> Result<u64, IbdbError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| IbdbError::io(path, "stat", e))
}

/// Reads from `pos` until `buf` is full or the file ends; returns the
/// bytes read.
fn read_upto(file: &File, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `from..to` in blocks of [`SCAN_BLOCK`] and hands each block and
/// its offset to `f`, until the range or the file ends or `f` breaks.
fn for_each_block(
    file: &File,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
) -> io::Result<()> {
    let mut block = vec![0u8; SCAN_BLOCK];
    let mut at = from;
    while at < to {
        let want = usize::try_from(to - at).map_or(SCAN_BLOCK, |n| n.min(SCAN_BLOCK));
        let n = read_upto(file, at, &mut block[..want])?;
        if n == 0 || f(at, &block[..n]).is_break() {
            break;
        }
        at += n as u64;
    }
    Ok(())
}

/// Whether `from..to` holds only zeros (stops at the first other byte).
fn all_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut zero = true;
    for_each_block(file, from, to, |_, block| {
        zero = block.iter().all(|&b| b == 0);
        if zero {
            std::ops::ControlFlow::Continue(())
        } else {
            std::ops::ControlFlow::Break(())
        }
    })?;
    Ok(zero)
}

/// How many bytes of `from..to` lead up to and include the last non-zero
/// byte (0 if all are zero).
fn nonzero_extent(file: &File, from: u64, to: u64) -> io::Result<u64> {
    let mut last = None;
    for_each_block(file, from, to, |at, block| {
        if let Some(i) = block.iter().rposition(|&b| b != 0) {
            last = Some(at + i as u64);
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(last.map_or(0, |l| l + 1 - from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0000000000000001.ibdb", Some(1)),
            ("00000000000000FF.ibdb", Some(255)),
            ("FFFFFFFFFFFFFFFE.ibdb", Some(u64::MAX - 1)),
            ("FFFFFFFFFFFFFFFF.ibdb", None),
            ("0000000000000000.ibdb", None),
            ("00000000000000ff.ibdb", None),
            ("000000000000001.ibdb", None),
            ("0000000000000001.ibdb.1", None),
            ("0000000000000001", None),
            ("lock", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_name(name), *want, "{name}");
        }
        assert_eq!(super::super::writer::file_name(26), "000000000000001A.ibdb");
    }
}
