//! An unmodified algorithm inside a self-compressing `Region`: generate 256 MiB of
//! records, build a hash index over them, look every key up, and sort them — once in
//! plain memory and once in a region with 25% of its pages resident. Each run is its own
//! process (so each has its own peak RSS); the results must be identical.
//!
//! Run: `cargo run --release --example transparent_region` (needs userfaultfd: Linux,
//! root or `vm.unprivileged_userfaultfd=1`, or a kernel with UFFD_USER_MODE_ONLY).
//! `-- --mib N` changes the record volume.

use bytemuck::{Pod, Zeroable};
use std::process::Command;
use std::time::Instant;
use zpage::region::{Region, RegionError};
use zpage::{PAGE_SIZE, PageStore, Profile};

/// A 128-byte record, shaped like an order row: a key, a sequence number, small
/// numbers and a text column from a small vocabulary, zero-padded (like pgbench's filler).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Record {
    key: u32,
    seq: u32,
    amount: u32,
    category: u16,
    flags: u16,
    label: [u8; 112],
}

/// Keys (customer ids) are below 2^16, so the index needs at most 2^17 slots.
const INDEX_SLOTS: usize = 1 << 17;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib = args
        .iter()
        .position(|a| a == "--mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(256);
    match args.get(1).map(String::as_str) {
        Some("plain") => child(false, mib),
        Some("region") => child(true, mib),
        _ => parent(mib),
    }
}

/// Runs both modes as child processes and compares them.
fn parent(mib: usize) {
    let run = |mode: &str| {
        let out = Command::new(std::env::current_exe().expect("own path"))
            .args([mode, "--mib", &mib.to_string()])
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            eprintln!(
                "{mode} run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
        text
    };
    let field = |text: &str, key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .to_string()
    };
    let plain = run("plain");
    let region = run("region");
    if field(&region, "skipped") == "1" {
        // CI sets ZPAGE_REQUIRE_ALL on a machine with userfaultfd: there a skip fails.
        let reason = field(&region, "reason");
        assert!(std::env::var_os("ZPAGE_REQUIRE_ALL").is_none(), "{reason}");
        println!("{reason}");
        return;
    }
    let same = field(&plain, "checksum") == field(&region, "checksum");
    let rss = |t: &str| field(t, "peak_rss_kib").parse::<f64>().unwrap_or(0.0) / 1024.0;
    let secs = |t: &str| field(t, "seconds").parse::<f64>().unwrap_or(0.0);
    println!(
        "{mib} MiB of records: hash index, {} lookups, sort",
        field(&plain, "records")
    );
    println!(
        "  plain memory: peak RSS {:7.1} MiB, {:6.2} s",
        rss(&plain),
        secs(&plain)
    );
    println!(
        "  zpage region: peak RSS {:7.1} MiB, {:6.2} s   ({:.0}% of the plain RSS, {:.1}x the time)",
        rss(&region),
        secs(&region),
        100.0 * rss(&region) / rss(&plain).max(1e-9),
        secs(&region) / secs(&plain).max(1e-9)
    );
    println!(
        "  region: {} resident pages of {}, {} MiB compressed (ratio {}), {} refaults, {} first-touch faults, {} write-protect faults, {} evictions",
        field(&region, "resident_max"),
        field(&region, "pages"),
        field(&region, "compressed_mib"),
        field(&region, "ratio"),
        field(&region, "refaults"),
        field(&region, "zero_faults"),
        field(&region, "wp_faults"),
        field(&region, "evictions")
    );
    println!("  results identical: {}", if same { "yes" } else { "NO" });
    if !same {
        std::process::exit(1);
    }
}

fn child(in_region: bool, mib: usize) {
    let records = mib * (1 << 20) / size_of::<Record>();
    let index_slots = records.next_power_of_two().min(INDEX_SLOTS);
    let bytes = records * size_of::<Record>() + index_slots * 8;
    let start = Instant::now();
    let (checksum, region) = if in_region {
        let mut region = match Region::builder(bytes)
            .resident_pages(bytes.div_ceil(PAGE_SIZE) / 4)
            .store(PageStore::builder().profile(Profile::Dense).shards(4))
            .build()
        {
            Ok(region) => region,
            Err(RegionError::Unavailable(e)) => {
                println!("skipped=1\nreason=skipped: userfaultfd unavailable here: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let checksum = workload(region.as_mut_slice(), records, index_slots);
        (checksum, Some(region))
    } else {
        let mut memory = vec![0u8; bytes];
        (workload(&mut memory, records, index_slots), None)
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("records={records}\nchecksum={checksum:016x}\nseconds={seconds:.3}");
    if let Some(region) = region {
        let s = region.stats();
        println!(
            "pages={}\nresident_max={}\ncompressed_mib={:.1}\nratio={:.2}\nrefaults={}\nzero_faults={}\nwp_faults={}\nevictions={}",
            s.pages,
            s.resident_max,
            s.store.mm.mem_used_total as f64 / (1 << 20) as f64,
            s.store.ratio(),
            s.refaults,
            s.zero_faults,
            s.wp_faults,
            s.evictions
        );
    }
    println!("peak_rss_kib={}", peak_rss_kib());
}

/// The algorithm, on any memory: it does not know where it runs.
fn workload(memory: &mut [u8], records: usize, index_slots: usize) -> u64 {
    let (table, index) = memory.split_at_mut(records * size_of::<Record>());
    let table: &mut [Record] = bytemuck::cast_slice_mut(table);
    // Slots hold (key, position + 1); 0 marks an empty slot.
    let index: &mut [[u32; 2]] = bytemuck::cast_slice_mut(&mut index[..index_slots * 8]);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let labels = [
        "status=ok",
        "status=retry",
        "status=ok;express",
        "status=held",
    ];
    for (seq, record) in table.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let category = (x >> 40) as u16 % 16;
        let mut label = [0u8; 112];
        let text = format!(
            "region=eu-{:02};{}",
            category,
            labels[(x >> 50) as usize % 4]
        );
        label[..text.len()].copy_from_slice(text.as_bytes());
        *record = Record {
            key: (x % (1 << 16)) as u32,
            seq: seq as u32,
            amount: (x >> 20) as u32 % 100 * 50,
            category,
            flags: u16::from((x >> 58) == 0),
            label,
        };
    }
    // Hash index: key -> first record with it (open addressing, linear probing).
    let mask = index.len() - 1;
    let slot_of = |key: u32| (key as usize).wrapping_mul(0x9E37_79B1) & mask;
    for (position, record) in table.iter().enumerate() {
        let mut slot = slot_of(record.key);
        loop {
            match index[slot] {
                [_, 0] => {
                    index[slot] = [record.key, position as u32 + 1];
                    break;
                }
                [key, _] if key == record.key => break,
                _ => slot = (slot + 1) & mask,
            }
        }
    }
    // Every key is found, at a position no later than the record's own.
    let mut found = 0u64;
    for (position, record) in table.iter().enumerate() {
        let mut slot = slot_of(record.key);
        while index[slot][1] != 0 {
            if index[slot][0] == record.key {
                found += u64::from(index[slot][1] as usize <= position + 1);
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    assert_eq!(found, records as u64, "every record's key is indexed");
    table.sort_unstable_by_key(|r| (r.key, r.seq));
    // A checksum of the sorted table and the index.
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for record in table.iter() {
        hash = (hash ^ u64::from(record.key) ^ u64::from(record.seq) << 32)
            .wrapping_mul(0x100_0000_01b3);
    }
    for &[key, position] in index.iter() {
        hash = (hash ^ u64::from(key) ^ u64::from(position) << 32).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
