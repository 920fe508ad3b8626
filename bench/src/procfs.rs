//! What a process costs, read from /proc: CPU seconds, resident memory and threads, sampled in
//! the background, and the slope of a trace (least squares). Shared by mqtt-throughput, soak and
//! the flood commands.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// CPU seconds (user + system) a process used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat")).map(|(_, cpu)| cpu)
}

/// CPU seconds of a process's threads named `name`.
pub fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| stat_cpu(&t.path().join("stat").to_string_lossy()))
        .filter(|(comm, _)| comm == name)
        .map(|(_, cpu)| cpu)
        .sum()
}

/// A /proc `stat` file's command name and CPU seconds (user + system).
fn stat_cpu(path: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks / 100.0))
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    /// Resident set size (VmRSS), KiB.
    pub rss_kb: u64,
    pub threads: u64,
    /// CPU seconds so far.
    pub cpu_s: f64,
}

/// `VmRSS` (KiB) and `Threads` of a process, from /proc/PID/status.
pub fn rss_and_threads(pid: u32) -> Option<(u64, u64)> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix(':')?;
            v.split_whitespace().next()?.parse().ok()
        })
    };
    Some((field("VmRSS")?, field("Threads")?))
}

/// Samples a process every `period` on a thread of its own until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(pid: u32, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut out = Vec::new();
            let mut next = started;
            while !flag.load(Ordering::Relaxed) {
                let Some((rss_kb, threads)) = rss_and_threads(pid) else {
                    break; // the process is gone
                };
                out.push(Sample {
                    t: started.elapsed().as_secs_f64(),
                    rss_kb,
                    threads,
                    cpu_s: cpu_seconds(pid).unwrap_or(0.0),
                });
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
            }
            out
        });
        Sampler { stop, handle }
    }

    /// Stops sampling; the samples so far.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    (den > 0.0).then(|| num / den)
}

/// Peak RSS (KiB) and peak threads of `samples`.
pub fn peaks(samples: &[Sample]) -> (u64, u64) {
    samples
        .iter()
        .fold((0, 0), |(r, t), s| (r.max(s.rss_kb), t.max(s.threads)))
}

/// The samples as CSV: `t_s,rss_kb,threads,cpu_s`.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from("t_s,rss_kb,threads,cpu_s\n");
    for s in samples {
        let _ = writeln!(out, "{:.1},{},{},{:.2}", s.t, s.rss_kb, s.threads, s.cpu_s);
    }
    out
}

/// An SVG line chart of RSS (MiB, left axis) and threads (right axis) over minutes, with the
/// warm-up shaded and `title` on top. Hand-written: no plotting crate for two polylines.
pub fn svg_chart(samples: &[Sample], warmup_s: f64, title: &str) -> String {
    let (w, h) = (900.0_f64, 420.0_f64);
    let (left, right, top, bottom) = (70.0, 70.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let (rss_peak, thr_peak) = peaks(samples);
    let rss_max = nice_ceiling(rss_peak as f64 / 1024.0);
    let thr_max = nice_ceiling(thr_peak as f64);
    let x = |t: f64| left + pw * t / t_max;
    let y = |v: f64, max: f64| top + ph - ph * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>
<rect x="{left}" y="{top}" width="{:.1}" height="{ph}" fill="#eeeeee"/>
"##,
        w / 2.0,
        xml_escape(title),
        x(warmup_s.min(t_max)) - left,
    );
    for i in 0..=5 {
        let f = f64::from(i) / 5.0;
        let yy = top + ph - ph * f;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#cccccc"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#1f77b4">{:.0}</text><text x="{:.1}" y="{:.1}" fill="#d62728">{:.0}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            rss_max * f,
            left + pw + 6.0,
            yy + 4.0,
            thr_max * f
        );
    }
    let minutes = (t_max / 60.0).ceil().max(1.0) as u32;
    let step = minutes.div_ceil(10).max(1);
    for m in (0..=minutes).step_by(step as usize) {
        let xx = x(f64::from(m) * 60.0);
        if xx <= left + pw + 0.5 {
            let _ = writeln!(
                s,
                r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{m}</text>"#,
                top + ph + 18.0
            );
        }
    }
    let poly = |f: &dyn Fn(&Sample) -> f64, max: f64| -> String {
        samples
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t), y(f(p), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>
<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{}"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes</text>
<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle" fill="#1f77b4">RSS (MiB)</text>
<text x="{:.1}" y="{:.1}" transform="rotate(90 {:.1} {:.1})" text-anchor="middle" fill="#d62728">threads</text>
<text x="{:.1}" y="{:.1}" fill="#666666">warm-up</text>
</svg>
"##,
        poly(&|p| p.rss_kb as f64 / 1024.0, rss_max),
        poly(&|p| p.threads as f64, thr_max),
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0,
        top + ph / 2.0,
        w - 16.0,
        top + ph / 2.0,
        w - 16.0,
        top + ph / 2.0,
        left + 4.0,
        top + 14.0,
    );
    s
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (an axis maximum).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * mag)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise_around_a_level() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 1.0))
            .collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..100)
            .map(|i| (f64::from(i), if i % 2 == 0 { 10.0 } else { 12.0 }))
            .collect();
        assert!(slope(&flat).unwrap().abs() < 0.01);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn status_fields() {
        let st = "Name:\tsmartsite\nVmPeak:\t  99999 kB\nVmRSS:\t   84212 kB\nThreads:\t8\n";
        assert_eq!(parse_status(st), Some((84_212, 8)));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process_and_charts_them() {
        let s = Sampler::start(std::process::id(), Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(60));
        let samples = s.stop();
        assert!(samples.len() >= 2, "{samples:?}");
        assert!(samples.iter().all(|s| s.rss_kb > 0 && s.threads >= 1));
        let svg = svg_chart(&samples, 0.02, "a <test>");
        assert!(svg.starts_with("<svg") && svg.contains("a &lt;test&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(csv(&samples).lines().count() == samples.len() + 1);
        assert_eq!(nice_ceiling(337.0), 500.0);
        assert_eq!(nice_ceiling(8.0), 10.0);
        assert_eq!(nice_ceiling(200.0), 200.0);
    }
}
