//! Replay: reading every segment back on open, and setting damage aside.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::record::{self, Damage};
use super::{DamagedRange, ReplayReport, SegmentInfo, parse_segment_name, segment_header};
use crate::error::{Error, Result};

/// What replay hands to its caller for each record. The caller answers `Ok(Err(why))` for a
/// record whose content is damaged (set aside, replay goes on), `Err` to stop replay and fail.
pub(crate) type Visit<'a> =
    dyn FnMut(u64, u8, &[u8]) -> Result<std::result::Result<(), String>> + 'a;

pub(crate) struct Replayed {
    pub report: ReplayReport,
    pub segments: Vec<SegmentInfo>,
    pub max_lsn: u64,
}

/// Replays every segment in `dir`, calling `visit` for each record above `flushed_lsn`.
pub(crate) fn replay(dir: &Path, flushed_lsn: u64, visit: &mut Visit<'_>) -> Result<Replayed> {
    crate::manifest::create_dir_durably(dir)?;
    remove_unfinished_rewrites(dir)?;
    let mut paths: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(Error::io("list wal directory", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| parse_segment_name(&p).map(|lsn| (lsn, p)))
        .collect();
    paths.sort();
    let mut report = ReplayReport::default();
    let mut segments = Vec::new();
    let mut max_lsn = 0;
    for (first_lsn, path) in paths {
        report.segments += 1;
        // Never reuse an LSN a segment was named for, even when its records are set aside.
        max_lsn = max_lsn.max(first_lsn);
        let mut last_lsn = 0;
        let bytes = match read_file(&path) {
            Ok(bytes) => bytes,
            Err(_) => {
                set_aside_whole(dir, &path, Damage::Unreadable, &mut report)?;
                continue;
            }
        };
        if bytes.len() < record::SEGMENT_HEADER_LEN
            || bytes[..record::SEGMENT_HEADER_LEN] != segment_header()
        {
            set_aside_whole(dir, &path, Damage::BadHeader, &mut report)?;
            continue;
        }
        let mut pos = record::SEGMENT_HEADER_LEN;
        // Records whose content was refused: (offset, framed length, lsn).
        let mut refused = Vec::new();
        let damage = loop {
            match record::decode(&bytes[pos..]) {
                Ok(None) => break None,
                Err(damage) => break Some(damage),
                Ok(Some(rec)) => {
                    if rec.lsn > flushed_lsn {
                        match visit(rec.lsn, rec.tag, rec.payload)? {
                            Ok(()) => {
                                report.records_replayed += 1;
                                last_lsn = last_lsn.max(rec.lsn);
                            }
                            Err(why) => refused.push((pos, rec.framed_len, rec.lsn, why)),
                        }
                    } else {
                        report.records_already_flushed += 1;
                        last_lsn = last_lsn.max(rec.lsn);
                    }
                    pos += rec.framed_len;
                }
            }
        };
        let end = if let Some(damage) = damage {
            set_aside_tail(dir, &path, &bytes, pos, damage, &mut report)?;
            pos
        } else {
            bytes.len()
        };
        if !refused.is_empty() {
            set_aside_records(dir, &path, &bytes[..end], &refused, &mut report)?;
        }
        max_lsn = max_lsn.max(last_lsn);
        if last_lsn == 0 {
            // Nothing acknowledged lives here (damage, if any, is kept aside): drop the file so
            // that a new segment may reuse its name.
            fs::remove_file(&path).map_err(Error::io("remove empty wal segment", &path))?;
        } else {
            segments.push(SegmentInfo {
                path,
                last_lsn,
                active: false,
            });
        }
    }
    Ok(Replayed {
        report,
        segments,
        max_lsn,
    })
}

/// A rewrite that did not reach its rename left the segment itself whole: drop the copy.
fn remove_unfinished_rewrites(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(Error::io("list wal directory", dir))? {
        let path = entry.map_err(Error::io("list wal directory", dir))?.path();
        if path.extension().is_some_and(|e| e == "rewrite") {
            fs::remove_file(&path).map_err(Error::io("remove unfinished rewrite", &path))?;
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Where damaged bytes of `segment` are kept: `wal/corrupt/<segment name>.<suffix>`.
fn corrupt_path(dir: &Path, segment: &Path, suffix: &str) -> Result<PathBuf> {
    let corrupt = dir.join("corrupt");
    crate::manifest::create_dir_durably(&corrupt)?;
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    Ok(corrupt.join(format!("{name}.{suffix}")))
}

fn set_aside_tail(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    pos: usize,
    damage: Damage,
    report: &mut ReplayReport,
) -> Result<()> {
    let to = corrupt_path(dir, path, &format!("at-{pos}"))?;
    let tail = &bytes[pos..];
    write_synced(&to, tail)?;
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::io("open wal segment", path))?;
    file.set_len(pos as u64)
        .map_err(Error::io("truncate wal segment", path))?;
    file.sync_all()
        .map_err(Error::io("sync wal segment", path))?;
    tracing::warn!(segment = %path.display(), offset = pos, damage = damage.as_str(), bytes = tail.len(), set_aside_to = %to.display(), "wal damage: replay of this segment stopped here");
    report.damaged.push(DamagedRange {
        segment: path.to_owned(),
        offset: pos as u64,
        damage,
        bytes_set_aside: tail.len() as u64,
        set_aside_to: to,
    });
    Ok(())
}

/// Copies each refused record to `wal/corrupt/<segment>.lsn-<lsn>`, then replaces the segment
/// (temporary file, fsync, rename, directory fsync) by `kept` without them, so that the next
/// replay neither finds them again nor loses the records around them.
fn set_aside_records(
    dir: &Path,
    path: &Path,
    kept: &[u8],
    refused: &[(usize, usize, u64, String)],
    report: &mut ReplayReport,
) -> Result<()> {
    let mut rewritten = Vec::with_capacity(kept.len());
    let mut from = 0;
    for (pos, len, lsn, why) in refused {
        let to = corrupt_path(dir, path, &format!("lsn-{lsn}"))?;
        write_synced(&to, &kept[*pos..pos + len])?;
        rewritten.extend_from_slice(&kept[from..*pos]);
        from = pos + len;
        tracing::warn!(segment = %path.display(), offset = pos, lsn, reason = %why, set_aside_to = %to.display(), "wal damage: one record set aside, replay goes on");
        report.damaged.push(DamagedRange {
            segment: path.to_owned(),
            offset: *pos as u64,
            damage: Damage::BadContent,
            bytes_set_aside: *len as u64,
            set_aside_to: to,
        });
    }
    rewritten.extend_from_slice(&kept[from..]);
    let temporary = path.with_extension("wal.rewrite");
    write_synced(&temporary, &rewritten)?;
    fs::rename(&temporary, path).map_err(Error::io("replace wal segment", path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync wal directory", dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(Error::io("write", path))?;
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("sync", path))
}

fn set_aside_whole(
    dir: &Path,
    path: &Path,
    damage: Damage,
    report: &mut ReplayReport,
) -> Result<()> {
    let to = corrupt_path(dir, path, "whole")?;
    let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    fs::rename(path, &to).map_err(Error::io("set aside wal segment", path))?;
    tracing::warn!(segment = %path.display(), damage = damage.as_str(), set_aside_to = %to.display(), "wal damage: segment skipped");
    report.damaged.push(DamagedRange {
        segment: path.to_owned(),
        offset: 0,
        damage,
        bytes_set_aside: bytes,
        set_aside_to: to,
    });
    Ok(())
}
