//! Unit tests of the simulated disk's model: durability, fsyncgate, tears, fuses, space.
use super::*;

fn opts(create_new: bool) -> OpenOptions {
    OpenOptions { create_new, direct: false }
}

#[test]
fn unsynced_data_and_names_are_lost_at_crash() {
    let d = SimDisk::new();
    let dir = Path::new("/d");
    d.create_dir_all(dir).unwrap();
    d.sync_dir(Path::new("/")).unwrap();
    let f = d.open(&dir.join("a"), opts(true)).unwrap();
    d.write_at(f, 0, b"durable").unwrap();
    d.sync(f).unwrap();
    d.sync_dir(dir).unwrap();
    d.write_at(f, 7, b"-lost").unwrap();
    let g = d.open(&dir.join("b"), opts(true)).unwrap();
    d.write_at(g, 0, b"x").unwrap();
    d.sync(g).unwrap();
    d.crash(Tear::None);
    assert_eq!(d.file_bytes(&dir.join("a")).unwrap(), b"durable");
    assert_eq!(d.file_bytes(&dir.join("b")), None, "name b was never made durable");
}

#[test]
fn failed_sync_forgets_dirty_data() {
    let d = SimDisk::new();
    let dir = Path::new("/d");
    let f = d.open(&dir.join("a"), opts(true)).unwrap();
    d.sync_dir(dir).unwrap();
    d.write_at(f, 0, b"abc").unwrap();
    d.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
    assert!(d.sync(f).is_err());
    assert!(d.sync(f).is_ok(), "a retried fsync reports success");
    d.crash(Tear::None);
    assert_eq!(d.file_bytes(&dir.join("a")).unwrap(), [0u8; 3], "but the data never reached disk");
}

#[test]
fn torn_write_keeps_a_sector_prefix() {
    let d = SimDisk::new();
    let dir = Path::new("/d");
    let f = d.open(&dir.join("a"), opts(true)).unwrap();
    d.sync(f).unwrap();
    d.sync_dir(dir).unwrap();
    d.write_at(f, 0, &[7u8; 4 * SECTOR_SIZE_BYTES]).unwrap();
    d.crash(Tear::LastWrite { seed: 2 });
    assert_eq!(d.file_bytes(&dir.join("a")).unwrap(), vec![7u8; 2 * SECTOR_SIZE_BYTES]);
}

#[test]
fn crash_fuse_and_space_limit() {
    let d = SimDisk::new();
    let dir = Path::new("/d");
    d.set_faults(SimFaults {
        crash_at_point: Some(2),
        capacity_bytes: Some(10),
        ..SimFaults::default()
    });
    let f = d.open(&dir.join("a"), opts(true)).unwrap(); // point 0
    let e = d.write_at(f, 0, &[1u8; 11]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    d.write_at(f, 0, &[1u8; 10]).unwrap(); // point 1
    assert!(d.sync(f).is_err()); // point 2: crash
    assert!(d.is_crashed());
    assert!(d.write_at(f, 0, b"x").is_err());
}

#[test]
fn durable_views_show_only_what_a_crash_would_keep() {
    let d = SimDisk::new();
    let dir = Path::new("/d");
    d.create_dir_all(dir).unwrap();
    d.sync_dir(Path::new("/")).unwrap();
    let path = dir.join("a");
    let f = d.open(&path, opts(true)).unwrap();
    d.allocate(f, 16).unwrap();
    assert_eq!(d.used_bytes(), 16);
    assert!(d.durable_file_names(dir).is_empty(), "the creation is not durable yet");
    assert_eq!(d.with_durable_bytes(&path, <[u8]>::len), None);
    d.sync_dir(dir).unwrap();
    assert_eq!(d.durable_file_names(dir), ["a"]);
    d.write_at(f, 0, b"abc").unwrap();
    assert_eq!(d.with_durable_bytes(&path, <[u8]>::to_vec), Some(Vec::new()), "not synced");
    d.sync(f).unwrap();
    let mut synced = vec![0u8; 16];
    synced[..3].copy_from_slice(b"abc");
    assert_eq!(d.with_durable_bytes(&path, <[u8]>::to_vec), Some(synced.clone()));
    d.write_at(f, 0, b"xyz").unwrap();
    d.remove(&path).unwrap();
    assert_eq!(d.durable_file_names(dir), ["a"], "the removal is not durable yet");
    assert_eq!(d.with_durable_bytes(&path, <[u8]>::to_vec), Some(synced));
    d.crash(Tear::None);
    assert_eq!(d.file_bytes(&path).unwrap()[..3], *b"abc", "the views agree with a crash");
}

#[test]
fn a_directory_lasts_only_once_its_parent_is_synced() {
    let d = SimDisk::new();
    let dir = Path::new("/a/b");
    d.create_dir_all(dir).unwrap();
    assert!(d.list_dir(dir).unwrap().is_empty());
    let path = dir.join("f");
    let f = d.open(&path, opts(true)).unwrap();
    d.write_at(f, 0, b"abc").unwrap();
    d.sync(f).unwrap();
    d.sync_dir(dir).unwrap();
    d.sync_dir(Path::new("/")).unwrap();
    assert!(d.durable_file_names(dir).is_empty(), "/a/b is not durable in /a yet");
    assert_eq!(d.with_durable_bytes(&path, <[u8]>::len), None);
    d.crash(Tear::None);
    assert_eq!(d.file_bytes(&path), None, "the file went with its directory");
    assert_eq!(d.list_dir(dir).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert!(d.list_dir(Path::new("/a")).unwrap().is_empty(), "/a was synced in /");

    d.create_dir_all(dir).unwrap();
    let f = d.open(&path, opts(true)).unwrap();
    d.write_at(f, 0, b"abc").unwrap();
    d.sync(f).unwrap();
    d.sync_dir(dir).unwrap();
    d.sync_dir(Path::new("/a")).unwrap();
    assert_eq!(d.durable_file_names(dir), ["f"]);
    d.crash(Tear::None);
    assert_eq!(d.file_bytes(&path).unwrap(), b"abc");
}

#[test]
fn writeback_keeps_any_pages_and_a_prefix_of_the_name_changes() {
    let dir = Path::new("/d");
    let page = BLOCK_SIZE_BYTES;
    let sector = SECTOR_SIZE_BYTES;
    let (mut whole, mut none, mut sectors, mut grown, mut sized_only) = (0, 0, 0, 0, 0);
    let mut names_seen = std::collections::BTreeSet::new();
    for seed in 0..400 {
        let d = SimDisk::new();
        d.put_file(&dir.join("x"), b"old");
        let f = d.open(&dir.join("a"), opts(true)).unwrap();
        d.write_at(f, 0, &vec![1u8; 4 * page]).unwrap();
        d.sync(f).unwrap();
        d.sync_dir(dir).unwrap();
        // Unsynced: pages 1 and 2 rewritten, page 4 appended; then three name changes.
        d.write_at(f, page as u64, &vec![2u8; 2 * page]).unwrap();
        d.write_at(f, 4 * page as u64, &vec![3u8; page]).unwrap();
        d.open(&dir.join("b"), opts(true)).unwrap();
        d.rename(&dir.join("b"), &dir.join("c")).unwrap();
        d.remove(&dir.join("x")).unwrap();
        d.crash(Tear::Writeback { seed });

        let names = d.file_names(dir);
        let prefixes = [vec!["a", "x"], vec!["a", "b", "x"], vec!["a", "c", "x"], vec!["a", "c"]];
        assert!(prefixes.iter().any(|p| *p == names), "seed {seed}: {names:?} is no prefix");
        names_seen.insert(names);
        let bytes = d.file_bytes(&dir.join("a")).unwrap();
        assert!(bytes.len() >= 4 * page && bytes.len() <= 5 * page, "seed {seed}");
        assert!(bytes.len().is_multiple_of(sector), "seed {seed}: whole sectors survive");
        for (k, chunk) in bytes.chunks(sector).enumerate() {
            let allowed: &[u8] = match k * sector / page {
                0 | 3 => &[1],
                1 | 2 => &[1, 2],
                _ => &[0, 3],
            };
            assert!(
                allowed.iter().any(|&b| chunk.iter().all(|&c| c == b)),
                "seed {seed}: sector {k} holds neither what was durable nor what was written"
            );
        }
        let rewritten: Vec<usize> = (page..3 * page)
            .step_by(sector)
            .filter(|&at| bytes[at] == 2)
            .map(|at| at / sector)
            .collect();
        match rewritten.len() {
            0 => none += 1,
            16 => whole += 1,
            n if n % 8 != 0 => sectors += 1,
            _ => {}
        }
        grown += u32::from(bytes.len() > 4 * page);
        // The size survived without the data: the appended page reads as zeros.
        sized_only +=
            u32::from(bytes.len() == 5 * page && bytes[4 * page..].iter().all(|&b| b == 0));
    }
    assert_eq!(names_seen.len(), 4, "every prefix of the name changes survives for some seed");
    let seen = [whole, none, sectors, grown, sized_only];
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn writeback_keeps_nothing_a_directory_fsync_or_a_failed_fdatasync_settled() {
    let dir = Path::new("/d");
    for seed in 0..100 {
        let d = SimDisk::new();
        let f = d.open(&dir.join("a"), opts(true)).unwrap();
        d.open(&dir.join("b"), opts(true)).unwrap();
        d.sync_dir(dir).unwrap();
        d.remove(&dir.join("b")).unwrap();
        d.open(&dir.join("b"), opts(true)).unwrap();
        d.sync_dir(dir).unwrap();
        // A failed fdatasync forgot the range: no writeback brings it back.
        d.write_at(f, 0, b"lost").unwrap();
        d.set_faults(SimFaults { fail_next_sync: true, ..SimFaults::default() });
        assert!(d.sync(f).is_err());
        d.crash(Tear::Writeback { seed });
        assert_eq!(d.file_names(dir), ["a", "b"], "seed {seed}: the synced names stay");
        assert_eq!(d.file_bytes(&dir.join("a")).unwrap(), b"", "seed {seed}");
    }
}
