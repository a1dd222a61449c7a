//! Open time of a large segment log: writes N events (64 writers, 100
//! events of 200 bytes per append, buffered), closes, then times a reopen,
//! a reopen after the index directory is deleted (a full rebuild), and
//! `read_all` over everything. Prints disk usage and resident memory.
//!
//! `cargo run --release -p strata-store --example segment_open -- 10000000 [DIR]`

use std::sync::Arc;
use std::time::Instant;

use strata_store::{EventStore, ExpectedVersion, NewEvent, SegmentDurability, SegmentOptions, SegmentStore, StreamId};

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let options = SegmentOptions {
        durability: SegmentDurability::Buffered,
        ..SegmentOptions::default()
    };
    let store = SegmentStore::open_with(&dir, options.clone())?;
    let started = Instant::now();
    let payload = bytes::Bytes::from(vec![7u8; 200]);
    let appends = n / 100;
    let writers = 64u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, payload) = (store.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let s = StreamId::new(format!("stream-{w}")).unwrap();
            for _ in (w..appends).step_by(writers as usize) {
                let events = (0..100).map(|_| NewEvent::new("E", payload.clone())).collect();
                store.append(&s, ExpectedVersion::Any, events).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let waited = store.clone();
    tokio::task::spawn_blocking(move || waited.wait_indexed()).await??;
    let head = store.head_position().await?;
    let usage = store.disk_usage();
    println!(
        "wrote {head} events in {:.1?} ({:.0}/s), log {} MB ({:.0} B/event), index {} MB, RSS {} MB",
        started.elapsed(),
        head as f64 / started.elapsed().as_secs_f64(),
        usage.log_bytes / 1_000_000,
        usage.log_bytes as f64 / head as f64,
        usage.index_bytes / 1_000_000,
        rss_mb()
    );
    drop(store);
    let started = Instant::now();
    let store = Arc::new(SegmentStore::open_with(&dir, options.clone())?);
    println!("reopen: {:.1?}, RSS {} MB", started.elapsed(), rss_mb());
    let started = Instant::now();
    let (mut next, mut read) = (1, 0u64);
    loop {
        let page = store.read_all(next, 4096).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        read += page.len() as u64;
    }
    println!(
        "read_all: {read} events in {:.1?} ({:.0}/s)",
        started.elapsed(),
        read as f64 / started.elapsed().as_secs_f64()
    );
    drop(store);
    std::fs::remove_dir_all(dir.join("index"))?;
    let started = Instant::now();
    let store = SegmentStore::open_with(&dir, options)?;
    println!(
        "reopen without the index (rebuild): {:.1?}, RSS {} MB",
        started.elapsed(),
        rss_mb()
    );
    drop(store);
    Ok(())
}
