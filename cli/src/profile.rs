//! An in-process sampling profiler for `smartsite serve` (cargo feature `profile`): with
//! `SMARTSITE_PROFILE=FILE`, the process samples its own stacks (pprof-rs: SIGPROF timer and
//! in-process unwinding, so it works where perf and ptrace are not allowed) and writes, on
//! shutdown, the functions by self and inclusive share of the samples, and the threads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// A running profile; the report is written when [`Profile::finish`] is called.
pub struct Profile {
    guard: pprof::ProfilerGuard<'static>,
    out: PathBuf,
}

impl Profile {
    /// Starts sampling at `hz` when `SMARTSITE_PROFILE` names an output file.
    pub fn from_env(hz: i32) -> anyhow::Result<Option<Profile>> {
        let Some(out) = std::env::var_os("SMARTSITE_PROFILE") else {
            return Ok(None);
        };
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(hz)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()?;
        Ok(Some(Profile {
            guard,
            out: out.into(),
        }))
    }

    /// Writes the report: top functions by self samples and by inclusive samples, per thread
    /// group (thread names without their numeric suffix).
    pub fn finish(self) -> anyhow::Result<()> {
        let report = self.guard.report().build()?;
        let mut total = 0isize;
        let mut leaf: HashMap<String, isize> = HashMap::new();
        let mut inclusive: HashMap<String, isize> = HashMap::new();
        let mut threads: HashMap<String, isize> = HashMap::new();
        for (frames, count) in &report.data {
            total += count;
            let thread: String = frames
                .thread_name
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_owned();
            *threads.entry(thread).or_default() += count;
            let names: Vec<String> = frames
                .frames
                .iter()
                .flat_map(|f| f.iter().map(|s| short(&s.name())))
                .collect();
            if let Some(first) = names.first() {
                *leaf.entry(first.clone()).or_default() += count;
            }
            let mut seen = std::collections::HashSet::new();
            for n in names {
                if seen.insert(n.clone()) {
                    *inclusive.entry(n).or_default() += count;
                }
            }
        }
        let mut text = String::new();
        let pct = |n: isize| 100.0 * n as f64 / total.max(1) as f64;
        let _ = writeln!(text, "samples: {total}\n\n## threads");
        for (name, n) in top(&threads, 20) {
            let _ = writeln!(text, "{:6.2}%  {name}", pct(n));
        }
        let _ = writeln!(text, "\n## self (leaf frame)");
        for (name, n) in top(&leaf, 60) {
            let _ = writeln!(text, "{:6.2}%  {name}", pct(n));
        }
        let _ = writeln!(text, "\n## inclusive (on the stack)");
        for (name, n) in top(&inclusive, 120) {
            let _ = writeln!(text, "{:6.2}%  {name}", pct(n));
        }
        std::fs::write(&self.out, text)?;
        Ok(())
    }
}

fn top(m: &HashMap<String, isize>, n: usize) -> Vec<(String, isize)> {
    let mut v: Vec<(String, isize)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// A demangled symbol without its hash suffix and generic arguments, to group by function.
fn short(name: &str) -> String {
    let mut s = name.to_owned();
    if let Some(i) = s.rfind("::h")
        && s[i + 3..].chars().all(|c| c.is_ascii_hexdigit())
    {
        s.truncate(i);
    }
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}
