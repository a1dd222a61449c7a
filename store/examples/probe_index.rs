//! Throwaway probe (not committed): logical bytes of the sled index by key space.
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let db = sled::Config::new().path(&dir).open().unwrap();
    let tree = db.open_tree("strata-index").unwrap();
    let mut by: std::collections::BTreeMap<u8, (u64, u64, u64)> = Default::default();
    for kv in tree.iter() {
        let (k, v) = kv.unwrap();
        let e = by.entry(k[0]).or_default();
        e.0 += 1;
        e.1 += k.len() as u64;
        e.2 += v.len() as u64;
    }
    for (p, (n, k, v)) in by {
        println!(
            "{} entries {n} key bytes {k} value bytes {v} ({:.1} MiB)",
            p as char,
            (k + v) as f64 / 1048576.0
        );
    }
    println!("size_on_disk {} MiB", db.size_on_disk().unwrap() >> 20);
}
