//! Failure throttling for sign-in: exponential backoff per key (a username, a source address),
//! then a temporary lockout, forgotten after a quiet period.
//!
//! After `free_failures` failures of a key, each further failure blocks the key for
//! `base_delay × 2^k` (k = failures past the free ones, starting at 0), capped at `max_block`.
//! While blocked, an attempt is refused at once, before any password is hashed: a brute force
//! gets a few guesses per lockout period instead of ~80 per second, and costs the server nothing.
//! Failures are forgotten `forget_after` after the last one, or when the key succeeds.
//!
//! The table is bounded ([`Throttle::MAX_KEYS`]): when full, forgotten entries are dropped first,
//! then the ones idle longest, so a flood of made-up usernames cannot grow memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures before the first block.
    pub free_failures: u32,
    /// The first block; each failure after it doubles the block.
    pub base_delay: Duration,
    /// The longest block (the lockout).
    pub max_block: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
}

impl Policy {
    /// Per username: 5 free failures, then 1 s, 2 s, 4 s … up to a 15-minute lockout.
    pub const USERNAME: Policy = Policy {
        free_failures: 5,
        base_delay: Duration::from_secs(1),
        max_block: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };
    /// Per source address: more room (a site office behind one NAT address), the same backoff.
    pub const SOURCE: Policy = Policy {
        free_failures: 30,
        base_delay: Duration::from_secs(1),
        max_block: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };

    fn block_after(&self, failures: u32) -> Option<Duration> {
        let past = failures.checked_sub(self.free_failures)?;
        let factor = 1u32.checked_shl(past.min(31)).unwrap_or(u32::MAX);
        Some(
            self.base_delay
                .checked_mul(factor)
                .map_or(self.max_block, |d| d.min(self.max_block)),
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// A throttle over string keys (one per policy).
pub struct Throttle {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

/// The key is blocked; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub retry_after: Duration,
}

impl Blocked {
    /// Whole seconds for a `Retry-After` header, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

impl Throttle {
    /// Keys kept at most; about 100 bytes each.
    pub const MAX_KEYS: usize = 100_000;

    pub fn new(policy: Policy) -> Self {
        Throttle {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` while `key` is blocked.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Blocked> {
        match self.entries().get(key).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(Blocked {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Records a failure of `key`; answers the block it starts, if any.
    pub fn fail(&self, key: &str, now: Instant) -> Option<Blocked> {
        let mut entries = self.entries();
        if !entries.contains_key(key) && entries.len() >= Self::MAX_KEYS {
            self.evict(&mut entries, now);
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(entry.last_failure) >= self.policy.forget_after {
            entry.failures = 0;
            entry.blocked_until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let block = self.policy.block_after(entry.failures)?;
        entry.blocked_until = Some(now + block);
        Some(Blocked { retry_after: block })
    }

    /// Forgets the failures of `key` (a successful sign-in).
    pub fn succeed(&self, key: &str) {
        self.entries().remove(key);
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one key: drops the forgotten ones, and if none, the tenth idle longest.
    fn evict(&self, entries: &mut HashMap<String, Entry>, now: Instant) {
        let forget = self.policy.forget_after;
        entries.retain(|_, e| {
            now.saturating_duration_since(e.last_failure) < forget
                || e.blocked_until.is_some_and(|u| u > now)
        });
        if entries.len() < Self::MAX_KEYS {
            return;
        }
        let mut ages: Vec<(Instant, String)> = entries
            .iter()
            .map(|(k, e)| (e.last_failure, k.clone()))
            .collect();
        ages.sort_unstable();
        for (_, k) in ages.into_iter().take(Self::MAX_KEYS / 10) {
            entries.remove(&k);
        }
    }
}

/// The sign-in guard: a username throttle and a source-address throttle.
pub struct SignInThrottle {
    pub usernames: Throttle,
    pub sources: Throttle,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        SignInThrottle {
            usernames: Throttle::new(Policy::USERNAME),
            sources: Throttle::new(Policy::SOURCE),
        }
    }
}

impl SignInThrottle {
    /// `Err` with the longer wait when the username or the source is blocked.
    pub fn check(
        &self,
        username: &str,
        source: Option<std::net::IpAddr>,
        now: Instant,
    ) -> Result<(), Blocked> {
        let by_name = self.usernames.check(username, now);
        let by_source = source.map_or(Ok(()), |ip| self.sources.check(&ip.to_string(), now));
        match (by_name, by_source) {
            (Err(a), Err(b)) => Err(if a.retry_after >= b.retry_after { a } else { b }),
            (Err(a), _) | (_, Err(a)) => Err(a),
            _ => Ok(()),
        }
    }

    /// Records a failed sign-in of `username` from `source`.
    pub fn fail(&self, username: &str, source: Option<std::net::IpAddr>, now: Instant) {
        self.usernames.fail(username, now);
        if let Some(ip) = source {
            self.sources.fail(&ip.to_string(), now);
        }
    }

    /// A successful sign-in forgets the username's failures (not the source's: one valid
    /// account must not reset an address that is guessing at others).
    pub fn succeed(&self, username: &str) {
        self.usernames.succeed(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        free_failures: 3,
        base_delay: Duration::from_secs(1),
        max_block: Duration::from_secs(60),
        forget_after: Duration::from_secs(600),
    };

    #[test]
    fn backoff_doubles_after_the_free_failures_up_to_the_lockout() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(t.fail("u", t0), None);
        }
        let mut now = t0;
        let mut blocks = Vec::new();
        for _ in 0..9 {
            let b = t.fail("u", now).unwrap();
            assert_eq!(t.check("u", now), Err(b));
            // Blocked until the end of the block, free again exactly then.
            assert!(
                t.check("u", now + b.retry_after - Duration::from_millis(1))
                    .is_err()
            );
            now += b.retry_after;
            assert_eq!(t.check("u", now), Ok(()));
            blocks.push(b.retry_after.as_secs());
        }
        assert_eq!(blocks, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // Other keys are not affected.
        assert_eq!(t.check("v", now), Ok(()));
    }

    #[test]
    fn success_and_quiet_time_forget_failures() {
        let t = Throttle::new(P);
        let t0 = Instant::now();
        for _ in 0..3 {
            t.fail("u", t0);
        }
        assert!(t.check("u", t0).is_err());
        t.succeed("u");
        assert_eq!(t.check("u", t0), Ok(()));
        assert_eq!(t.fail("u", t0), None, "counting starts again");
        for _ in 0..4 {
            t.fail("w", t0);
        }
        let later = t0 + P.forget_after;
        assert_eq!(t.fail("w", later), None, "forgotten after the quiet period");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let b = Blocked {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(b.retry_after_secs(), 2);
        let b = Blocked {
            retry_after: Duration::from_secs(3),
        };
        assert_eq!(b.retry_after_secs(), 3);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Throttle::new(P);
        let now = Instant::now();
        for i in 0..Throttle::MAX_KEYS + 500 {
            t.fail(&format!("user-{i}"), now);
        }
        assert!(t.len() <= Throttle::MAX_KEYS, "{}", t.len());
        // The newest key is tracked.
        let last = format!("user-{}", Throttle::MAX_KEYS + 499);
        for _ in 0..5 {
            t.fail(&last, now);
        }
        assert!(t.check(&last, now).is_err());
    }

    #[test]
    fn sign_in_checks_both_the_username_and_the_source() {
        let s = SignInThrottle::default();
        let now = Instant::now();
        let ip: std::net::IpAddr = [10, 0, 0, 7].into();
        // Many usernames from one address: the address is blocked, for any username.
        for i in 0..Policy::SOURCE.free_failures {
            s.fail(&format!("guess-{i}"), Some(ip), now);
        }
        assert!(s.check("someone-else", Some(ip), now).is_err());
        assert!(
            s.check("someone-else", Some([10, 0, 0, 8].into()), now)
                .is_ok()
        );
        // One username from many addresses: the username is blocked, from any address.
        for i in 0..Policy::USERNAME.free_failures {
            s.fail("admin", Some([192, 168, 1, i as u8].into()), now);
        }
        assert!(s.check("admin", Some([172, 16, 0, 1].into()), now).is_err());
        s.succeed("admin");
        assert!(s.check("admin", Some([172, 16, 0, 1].into()), now).is_ok());
        assert!(
            s.check("x", Some(ip), now).is_err(),
            "success does not clear the address"
        );
    }
}
