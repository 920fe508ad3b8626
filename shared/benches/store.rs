//! Throughput and latency of the embedded (redb) store, for BENCHMARKS.md.
//!
//! `cargo bench -p smartsite-shared --bench store` prints a markdown report on stdout (progress
//! goes to stderr). The store lives in a temp dir under Cargo's target tmp dir, on the real disk,
//! so every acknowledged write pays a real fsync. No criterion: fixed durations or counts after a
//! short warm-up, percentiles by sorting every sample.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail, ensure};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::embedded::EmbeddedStore;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::{BatchOp, Condition, Item, Key, Pk, Query, Store, TableDef, TxOp};
use tokio::task::JoinSet;

const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

const READ_PARTITIONS: u64 = 1_000;
const READ_PER_PARTITION: u64 = 100;
const FILL_CHUNK: u64 = 1_000;
/// Every item of these many read partitions also goes into gsi1, 100 per index partition.
const GSI_PARTITIONS: u64 = 100;
const TX_ITEMS: u64 = 25;

fn main() -> Result<()> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run())?;
    let total = started.elapsed();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    writeln!(
        out,
        "Total wall time of the benchmark binary: {:.1} s",
        total.as_secs_f64()
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurement.

/// One row of the report.
struct Row {
    name: String,
    conc: usize,
    ops: u64,
    items: u64,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Row {
    fn new(name: &str, conc: usize, items: u64, elapsed: Duration, mut lat: Vec<Duration>) -> Row {
        lat.sort_unstable();
        Row {
            name: name.to_owned(),
            conc,
            ops: lat.len() as u64,
            items,
            elapsed,
            lat,
        }
    }

    fn pct_us(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() - 1) as f64 * p).round() as usize;
        self.lat[i.min(self.lat.len() - 1)].as_secs_f64() * 1e6
    }

    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }

    fn markdown(&self) -> String {
        let items = if self.items == self.ops {
            "".to_owned()
        } else {
            fmt_num(self.per_sec(self.items))
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.name,
            self.conc,
            self.ops,
            fmt_num(self.per_sec(self.ops)),
            items,
            fmt_us(self.pct_us(0.50)),
            fmt_us(self.pct_us(0.99)),
            fmt_us(self.pct_us(1.0)),
        )
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Runs `op` in `workers` concurrent tasks until `dur` has passed, then waits for the ops in
/// flight. Each call gets a fresh number from one shared sequence and returns how many items it
/// handled. Throughput is completed ops over the time until the last one completed.
async fn for_duration<F, Fut>(
    workers: usize,
    dur: Duration,
    seq: &Arc<AtomicU64>,
    op: F,
) -> Result<(u64, Duration, Vec<Duration>)>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + dur;
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let op = Arc::clone(&op);
        let seq = Arc::clone(seq);
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut items = 0u64;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                items += op(n).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok((items, lat))
        });
    }
    let mut items = 0;
    let mut lat = Vec::new();
    while let Some(res) = set.join_next().await {
        let (i, l) = res??;
        items += i;
        lat.extend(l);
    }
    Ok((items, start.elapsed(), lat))
}

/// Warm-up then measurement, `workers` tasks each awaiting one op at a time.
async fn throughput<F, Fut>(name: &str, workers: usize, op: F) -> Result<Row>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64>> + Send + 'static,
{
    eprintln!("  {name}, {workers} task(s): warm-up {WARMUP:?}, measure {MEASURE:?}");
    let seq = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let warm = Arc::clone(&op);
    for_duration(workers, WARMUP, &seq, move |n| warm(n)).await?;
    let (items, elapsed, lat) = for_duration(workers, MEASURE, &seq, move |n| op(n)).await?;
    let row = Row::new(name, workers, items, elapsed, lat);
    eprintln!(
        "    {} ops/s, p50 {} us",
        fmt_num(row.per_sec(row.ops)),
        fmt_us(row.pct_us(0.5))
    );
    Ok(row)
}

/// `count` sequential calls from one task after `count / 10` warm-up calls.
async fn latency<F, Fut>(name: &str, count: u64, op: F) -> Result<Row>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    eprintln!("  {name}: {count} sequential calls");
    for n in 0..count / 10 {
        op(n.wrapping_add(u64::MAX / 2)).await?;
    }
    let mut lat = Vec::with_capacity(count as usize);
    let mut items = 0;
    let start = Instant::now();
    for n in 0..count {
        let t = Instant::now();
        items += op(n).await?;
        lat.push(t.elapsed());
    }
    let row = Row::new(name, 1, items, start.elapsed(), lat);
    eprintln!(
        "    p50 {} us, p99 {} us",
        fmt_us(row.pct_us(0.5)),
        fmt_us(row.pct_us(0.99))
    );
    Ok(row)
}

/// A well-mixed 64-bit hash of `n` (splitmix64): deterministic "random" picks without state.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// Data.

struct Keys {
    tenant: IntegratorId,
}

impl Keys {
    fn pk(&self, partition: u64) -> Pk {
        keys::entity(&self.tenant, EntityKind::Test, &format!("p{partition}"))
    }

    fn key(&self, partition: u64, n: u64) -> Key {
        Key::new(self.pk(partition), keys::seq_sk("E", n))
    }
}

/// A small item: its key plus a ~150-byte JSON document in `data` and a version number.
fn item(key: Key, n: u64) -> Result<Item> {
    let data = serde_json::json!({
        "name": format!("device-{n:08}"),
        "kind": "dust-sensor",
        "site": "site-0042",
        "reading": { "pm10": n % 500, "pm25": n % 250, "noise_db": 40 + n % 60 },
        "tags": ["north-gate", "outdoor"],
    });
    Ok(Item::new(key).with_json("data", &data)?.with("version", 1))
}

fn item_size(item: &Item) -> Result<usize> {
    let attrs = postcard::to_stdvec(item.attrs())?;
    Ok(item.key.pk.as_str().len() + item.key.sk.len() + attrs.len())
}

// ---------------------------------------------------------------------------------------------
// The benchmarks.

async fn run() -> Result<String> {
    let def = TableDef::main()?;
    let keys = Arc::new(Keys {
        tenant: IntegratorId::parse("bench")?,
    });
    let base = PathBuf::from(
        option_env!("CARGO_TARGET_TMPDIR")
            .map(str::to_owned)
            .unwrap_or_else(|| std::env::temp_dir().display().to_string()),
    );
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let dir_path = dir.path().canonicalize()?;
    let fs = filesystem_of(&dir_path).unwrap_or_else(|| "unknown filesystem".to_owned());
    eprintln!("store dir: {} ({fs})", dir_path.display());
    let sample = item(keys.key(0, 0), 0)?;
    let size = item_size(&sample)?;

    let mut rows: Vec<Row> = Vec::new();

    eprintln!("fsync baseline");
    rows.push(fsync_baseline(&dir_path, false)?);
    rows.push(fsync_baseline(&dir_path, true)?);

    eprintln!("conditional puts (Condition::NotExists, new keys)");
    for (i, workers) in [1usize, 64, 256].into_iter().enumerate() {
        let store = EmbeddedStore::open(dir_path.join(format!("put{i}.redb")), def)?;
        let keys = Arc::clone(&keys);
        let row = throughput("put, NotExists", workers, move |n| {
            let store = store.clone();
            let key = keys.key(n % 1_000, n);
            async move {
                store.put(item(key, n)?, Some(Condition::NotExists)).await?;
                Ok(1)
            }
        })
        .await?;
        rows.push(row);
    }

    eprintln!("transactions of {TX_ITEMS} conditional puts");
    for (i, workers) in [1usize, 64].into_iter().enumerate() {
        let store = EmbeddedStore::open(dir_path.join(format!("tx{i}.redb")), def)?;
        let keys = Arc::clone(&keys);
        let row = throughput(
            &format!("transact, {TX_ITEMS} × put NotExists"),
            workers,
            move |n| {
                let store = store.clone();
                let ops: Result<Vec<TxOp>> = (0..TX_ITEMS)
                    .map(|j| {
                        let m = n * TX_ITEMS + j;
                        Ok(TxOp::Put {
                            item: item(keys.key(n % 1_000, m), m)?,
                            cond: Some(Condition::NotExists),
                        })
                    })
                    .collect();
                async move {
                    store.transact(ops?).await?;
                    Ok(TX_ITEMS)
                }
            },
        )
        .await?;
        rows.push(row);
    }

    eprintln!(
        "filling the read store: {} items in {READ_PARTITIONS} partitions, batches of {FILL_CHUNK}",
        READ_PARTITIONS * READ_PER_PARTITION
    );
    let store = EmbeddedStore::open(dir_path.join("read.redb"), def)?;
    let gsi = def.index("gsi1")?;
    let fill_start = Instant::now();
    let mut fill_lat = Vec::new();
    let total = READ_PARTITIONS * READ_PER_PARTITION;
    let mut next = 0u64;
    while next < total {
        let mut ops = Vec::with_capacity(FILL_CHUNK as usize);
        for n in next..(next + FILL_CHUNK).min(total) {
            let (p, i) = (n / READ_PER_PARTITION, n % READ_PER_PARTITION);
            let mut it = item(keys.key(p, i), n)?;
            if p < GSI_PARTITIONS {
                it = it.with_index_key(
                    gsi,
                    format!("G#{}", n % GSI_PARTITIONS),
                    keys::seq_sk("T", n),
                );
            }
            ops.push(BatchOp::Put(it));
        }
        next += ops.len() as u64;
        let t = Instant::now();
        store.batch_write(ops).await?;
        fill_lat.push(t.elapsed());
    }
    let fill = Row::new(
        &format!("batch_write fill, {FILL_CHUNK} items/batch"),
        1,
        total,
        fill_start.elapsed(),
        fill_lat,
    );
    eprintln!("    {} items/s", fmt_num(fill.per_sec(total)));
    rows.push(fill);
    let db_bytes = std::fs::metadata(dir_path.join("read.redb"))?.len();

    eprintln!("reads");
    let pick = {
        let keys = Arc::clone(&keys);
        move |n: u64| {
            let r = mix(n);
            keys.key(r % READ_PARTITIONS, (r >> 32) % READ_PER_PARTITION)
        }
    };
    {
        let (store, pick) = (store.clone(), pick.clone());
        rows.push(
            latency("get, random existing key", 20_000, move |n| {
                let (store, key) = (store.clone(), pick(n));
                async move {
                    ensure!(store.get(&key).await?.is_some(), "missing {key:?}");
                    Ok(1)
                }
            })
            .await?,
        );
    }
    {
        let (store, pick) = (store.clone(), pick.clone());
        rows.push(
            throughput("get, random existing key", 64, move |n| {
                let (store, key) = (store.clone(), pick(n));
                async move {
                    ensure!(store.get(&key).await?.is_some(), "missing {key:?}");
                    Ok(1)
                }
            })
            .await?,
        );
    }
    let query = |name: &'static str,
                 count: u64,
                 want: usize,
                 q: Arc<dyn Fn(u64) -> Query + Send + Sync>| {
        let store = store.clone();
        latency(name, count, move |n| {
            let (store, q) = (store.clone(), q(n));
            async move {
                let page = store.query(q).await?;
                if page.items.len() != want {
                    bail!("{name}: {} items, expected {want}", page.items.len());
                }
                Ok(page.items.len() as u64)
            }
        })
    };
    {
        let keys = Arc::clone(&keys);
        rows.push(
            query(
                "query partition (100 items)",
                3_000,
                100,
                Arc::new(move |n| Query::partition(&keys.pk(mix(n) % READ_PARTITIONS))),
            )
            .await?,
        );
    }
    {
        let keys = Arc::clone(&keys);
        rows.push(
            query(
                "query partition, limit 10 (first page)",
                10_000,
                10,
                Arc::new(move |n| Query::partition(&keys.pk(mix(n) % READ_PARTITIONS)).limit(10)),
            )
            .await?,
        );
    }
    rows.push(
        query(
            "query gsi1 (100 items)",
            3_000,
            100,
            Arc::new(|n| Query::index("gsi1", format!("G#{}", mix(n) % GSI_PARTITIONS))),
        )
        .await?,
    );
    rows.push(
        query(
            "query gsi1, limit 10 (first page)",
            10_000,
            10,
            Arc::new(|n| Query::index("gsi1", format!("G#{}", mix(n) % GSI_PARTITIONS)).limit(10)),
        )
        .await?,
    );
    drop(store);

    // The report.
    let mut s = String::new();
    use std::fmt::Write as _;
    writeln!(s, "### Embedded store (redb, group commit)\n")?;
    writeln!(
        s,
        "- Command: `cargo bench -p smartsite-shared --bench store`"
    )?;
    writeln!(s, "- Date (UTC): {}", utc_now())?;
    writeln!(s, "- Machine: {}", machine())?;
    writeln!(s, "- Store dir: `{}` ({fs})", dir_path.display())?;
    writeln!(
        s,
        "- Item: {size} bytes (pk + sk + postcard-encoded attributes; `data` is a JSON string)"
    )?;
    writeln!(
        s,
        "- Throughput rows: {WARMUP:?} warm-up, then {MEASURE:?}; each task awaits one op at a time; \
         latency is per op as seen by its task. Latency-only rows: one task, sequential calls, \
         10% extra warm-up calls first. Every write is fsync-durable before it is acknowledged."
    )?;
    writeln!(
        s,
        "- Read store: {} items in {READ_PARTITIONS} partitions of {READ_PER_PARTITION}; \
         {} of them also in gsi1 ({GSI_PARTITIONS} index partitions of 100); file {:.1} MiB",
        total,
        GSI_PARTITIONS * READ_PER_PARTITION,
        db_bytes as f64 / (1024.0 * 1024.0)
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "| Operation | Tasks | Ops | Ops/s | Items/s | p50 µs | p99 µs | max µs |"
    )?;
    writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in &rows {
        writeln!(s, "{}", r.markdown())?;
    }
    Ok(s)
}

/// Raw cost of a durable small write on this disk, without redb: 200 bytes then `fdatasync`,
/// either appended (the file grows, so metadata is flushed too) or overwritten in place.
fn fsync_baseline(dir: &Path, append: bool) -> Result<Row> {
    use std::io::{Seek as _, SeekFrom};
    let path = dir.join(if append {
        "append.bin"
    } else {
        "overwrite.bin"
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let buf = [0x5au8; 200];
    if !append {
        f.write_all(&[0u8; 4096])?;
        f.sync_all()?;
    }
    let one = |f: &mut std::fs::File| -> Result<()> {
        if !append {
            f.seek(SeekFrom::Start(0))?;
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        Ok(())
    };
    let warm = Instant::now() + WARMUP;
    while Instant::now() < warm {
        one(&mut f)?;
    }
    let dur = Duration::from_secs(2);
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        one(&mut f)?;
        lat.push(t.elapsed());
    }
    let name = if append {
        "baseline: append 200 B + fdatasync (no redb)"
    } else {
        "baseline: overwrite 200 B + fdatasync (no redb)"
    };
    let items = lat.len() as u64;
    let row = Row::new(name, 1, items, start.elapsed(), lat);
    eprintln!("  {name}: p50 {} us", fmt_us(row.pct_us(0.5)));
    std::fs::remove_file(&path)?;
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// Machine facts.

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("?".to_owned(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "nproc {nproc}, CPU `{cpu}`, RAM {mem}, Linux {}",
        kernel.trim()
    )
}

/// The filesystem type and device of the mount holding `path`, from /proc/mounts.
fn filesystem_of(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt)
                .then(|| (mnt.len(), format!("{ty} on {dev}, mounted at {mnt}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
}

/// Now as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no date crate needed).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}
