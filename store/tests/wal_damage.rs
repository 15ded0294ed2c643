//! One test per kind of WAL damage: the store opens, keeps the valid prefix, sets the rest aside
//! (counted, and kept under `wal/corrupt/`), and takes new appends that survive a reopen.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use spyglass_store::model::Span;
use spyglass_store::wal::Damage;
use spyglass_store::{ReplayReport, StoreConfig};

/// Writes `n` one-span records (one segment, or one segment per record with `roll_each`), and
/// drops the store without a flush, as a crash would.
async fn write_records(dir: &Path, n: u64, roll_each: bool) -> Vec<Span> {
    let config = StoreConfig {
        wal_segment_bytes: if roll_each { 1 } else { 64 << 20 },
        ..config()
    };
    let store = open_with(dir, config);
    let mut spans = Vec::new();
    for i in 0..n {
        let s = span(i, 1, "svc", T0 + i);
        append(&store, vec![s.clone()]).await;
        spans.push(s);
    }
    drop(store);
    spans
}

/// Reopens, checks the kept prefix and the damage report, then appends once more and checks
/// that the new span and the prefix survive another reopen.
async fn check_recovery(dir: &Path, kept: &[Span], damage: Damage) -> ReplayReport {
    let (store, report) =
        spyglass_store::Store::open(dir, config()).expect("a damaged wal still opens");
    assert_eq!(
        span_ids(&store.snapshot()),
        expected_ids(kept),
        "the valid prefix is kept, nothing else"
    );
    assert_eq!(report.damaged.len(), 1, "one damaged range: {report:?}");
    let range = &report.damaged[0];
    assert_eq!(range.damage, damage);
    assert!(range.bytes_set_aside > 0);
    assert!(range.set_aside_to.exists(), "damaged bytes are kept aside");
    assert_eq!(
        range.set_aside_to.parent().unwrap(),
        dir.join("wal").join("corrupt")
    );

    let fresh = span(1000, 1, "svc", T0);
    append(&store, vec![fresh.clone()]).await;
    drop(store);
    let (store, second) = spyglass_store::Store::open(dir, config()).expect("reopens");
    assert!(
        second.damaged.is_empty(),
        "the set-aside damage is not found twice: {second:?}"
    );
    let mut all = kept.to_vec();
    all.push(fresh);
    assert_eq!(span_ids(&store.snapshot()), expected_ids(&all));
    report
}

#[tokio::test]
async fn torn_last_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 5, false).await;
    let segment = &wal_segments(dir.path())[0];
    let len = fs::metadata(segment).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    check_recovery(dir.path(), &spans[..4], Damage::Truncated).await;
}

#[tokio::test]
async fn bad_checksum_stops_the_segment_there() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 5, false).await;
    let segment = &wal_segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    let (start, len) = record_offsets(&bytes)[2];
    bytes[start + 8 + len / 2] ^= 0x40;
    fs::write(segment, &bytes).unwrap();
    let report = check_recovery(dir.path(), &spans[..2], Damage::BadChecksum).await;
    assert_eq!(report.damaged[0].offset, start as u64);
    assert_eq!(
        report.damaged[0].bytes_set_aside,
        (bytes.len() - start) as u64
    );
}

#[tokio::test]
async fn bad_length_stops_the_segment_there() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 5, false).await;
    let segment = &wal_segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    let (start, _) = record_offsets(&bytes)[3];
    bytes[start..start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(segment, &bytes).unwrap();
    check_recovery(dir.path(), &spans[..3], Damage::BadLength).await;
}

#[tokio::test]
async fn bad_content_with_a_valid_checksum_sets_aside_that_record_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 5, false).await;
    let segment = &wal_segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    let (start, len) = record_offsets(&bytes)[1];
    // Garble the Arrow payload (after lsn and signal tag), then make the checksum match again.
    let body = start + 8;
    for b in &mut bytes[body + 9..body + len] {
        *b = 0x42;
    }
    let crc = crc32c::crc32c(&bytes[body..body + len]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    fs::write(segment, &bytes).unwrap();
    let mut kept = vec![spans[0].clone()];
    kept.extend_from_slice(&spans[2..]);
    let report = check_recovery(dir.path(), &kept, Damage::BadContent).await;
    let range = &report.damaged[0];
    assert_eq!(
        range.bytes_set_aside,
        8 + len as u64,
        "exactly the one record is set aside"
    );
    assert_eq!(
        fs::read(&range.set_aside_to).unwrap(),
        bytes[start..start + 8 + len],
        "the set-aside copy is the record as it was"
    );
}

#[tokio::test]
async fn several_bad_records_and_a_torn_tail_in_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 6, false).await;
    let segment = &wal_segments(dir.path())[0];
    let mut bytes = fs::read(segment).unwrap();
    let offsets = record_offsets(&bytes);
    for &i in &[0usize, 3] {
        let (start, len) = offsets[i];
        let body = start + 8;
        bytes[body + 9..body + len].fill(0x17);
        let crc = crc32c::crc32c(&bytes[body..body + len]);
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    // The last record never finished writing.
    bytes.truncate(offsets[5].0 + 10);
    fs::write(segment, &bytes).unwrap();

    let (store, report) = spyglass_store::Store::open(dir.path(), config()).unwrap();
    assert_eq!(
        span_ids(&store.snapshot()),
        expected_ids(&[spans[1].clone(), spans[2].clone(), spans[4].clone()])
    );
    let mut damage: Vec<_> = report.damaged.iter().map(|d| d.damage).collect();
    damage.sort_by_key(|d| d.as_str());
    assert_eq!(
        damage,
        [Damage::BadContent, Damage::BadContent, Damage::Truncated]
    );
    drop(store);
    let (store, again) = spyglass_store::Store::open(dir.path(), config()).unwrap();
    assert!(again.damaged.is_empty(), "{again:?}");
    assert_eq!(span_ids(&store.snapshot()).len(), 3);
}

#[tokio::test]
async fn truncated_middle_segment_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 4, true).await;
    let segments = wal_segments(dir.path());
    assert_eq!(segments.len(), 4, "one record per segment");
    let len = fs::metadata(&segments[1]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segments[1])
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let kept = [spans[0].clone(), spans[2].clone(), spans[3].clone()];
    check_recovery(dir.path(), &kept, Damage::Truncated).await;
}

#[tokio::test]
async fn unreadable_later_segment_is_set_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 3, true).await;
    let segments = wal_segments(dir.path());
    // Root reads any file whatever its mode, so make the segment unreadable by making it a
    // directory: open succeeds, read fails.
    fs::remove_file(&segments[2]).unwrap();
    fs::create_dir(&segments[2]).unwrap();
    fs::write(segments[2].join("junk"), b"not a segment").unwrap();
    let report = check_recovery(dir.path(), &spans[..2], Damage::Unreadable).await;
    assert!(
        !segments[2].is_dir(),
        "the unreadable segment moved out of the way"
    );
    assert!(report.damaged[0].set_aside_to.is_dir());
}

#[tokio::test]
async fn garbage_segment_header_is_set_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spans = write_records(dir.path(), 3, true).await;
    let segments = wal_segments(dir.path());
    let mut bytes = fs::read(&segments[0]).unwrap();
    bytes[..6].copy_from_slice(b"NOTWAL");
    fs::write(&segments[0], &bytes).unwrap();
    check_recovery(dir.path(), &spans[1..], Damage::BadHeader).await;
}
