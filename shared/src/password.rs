//! Password hashing: argon2id with the crate's default (OWASP-recommended) parameters, on a small
//! fixed pool of hashing threads.
//!
//! One argon2id hash holds 19 MiB of memory while it runs. Run on tokio's blocking pool, every
//! concurrent sign-in got its own thread and its own 19 MiB, and the allocator kept the freed
//! blocks: 64 concurrent failed sign-ins took the process to 4.4 GB, still 3.4 GB 30 s later.
//! Here at most [`HashPool::workers`] hashes run at once (one per core, by default), each worker
//! reuses its own memory blocks for every hash, so memory is bounded by `workers × 19 MiB` and
//! never grows with load. Callers beyond the workers wait in a bounded queue for at most
//! [`QUEUE_WAIT`]; past that, or when the queue is full, they get [`Busy`] (the HTTP edge answers
//! 503 with `Retry-After`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// How long a caller waits for a free hashing worker before [`Busy`].
pub const QUEUE_WAIT: Duration = Duration::from_secs(3);
/// Callers allowed to wait per worker; beyond it [`Busy`] at once.
const WAITING_PER_WORKER: usize = 16;
/// The largest `m` (KiB) a stored hash may ask for; a hash asking for more never verifies (it
/// would let a planted hash take unbounded memory). Four times today's default.
const MAX_M_COST_KIB: u32 = 4 * Params::DEFAULT_M_COST;
const MAX_T_COST: u32 = 16;

/// No hashing worker became free in time: retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is busy; retry later")]
pub struct Busy;

enum Job {
    Hash {
        password: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<anyhow::Result<String>>,
    },
    Verify {
        password: Vec<u8>,
        phc: String,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
}

/// A fixed set of hashing threads, each with its own reusable argon2 memory.
pub struct HashPool {
    jobs: mpsc::SyncSender<Job>,
    permits: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
    workers: usize,
    max_waiting: usize,
}

impl HashPool {
    /// Starts `workers` hashing threads (at least one).
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        // Never more jobs than workers are handed over (the semaphore), so the channel never
        // blocks a sender.
        let (tx, rx) = mpsc::sync_channel::<Job>(workers);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(HashPool {
            jobs: tx,
            permits: Arc::new(tokio::sync::Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            workers,
            max_waiting: workers * WAITING_PER_WORKER,
        })
    }

    /// The process-wide pool: one worker per core, at most four.
    pub fn global() -> Result<&'static HashPool, Busy> {
        static POOL: OnceLock<Option<HashPool>> = OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            HashPool::new(cores.min(4))
                .inspect_err(|e| tracing::error!(error = %e, "cannot start hashing threads"))
                .ok()
        })
        .as_ref()
        .ok_or(Busy)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Waits (bounded) for a worker, hands it the job and waits for its answer.
    async fn run<T>(
        &self,
        job: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Job,
    ) -> Result<T, Busy> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        let permit = tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.permits).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.ok_or(Busy)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| Busy)?;
        let answer = rx.await.map_err(|_| Busy);
        drop(permit);
        answer
    }

    /// A PHC string (`$argon2id$v=19$…`) of `password` with a fresh salt.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.as_bytes().to_vec();
        self.run(|reply| Job::Hash { password, reply })
            .await
            .map_err(anyhow::Error::new)?
    }

    /// Whether `password` matches the PHC string. A malformed hash never matches.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, Busy> {
        let (password, phc) = (password.as_bytes().to_vec(), phc.to_owned());
        self.run(|reply| Job::Verify {
            password,
            phc,
            reply,
        })
        .await
    }
}

fn worker(jobs: &Mutex<mpsc::Receiver<Job>>) {
    // Grown once to the largest hash seen (19 MiB with today's parameters), then reused.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(Job::Hash { password, reply }) => {
                let _ = reply.send(hash_with(&password, &mut memory));
            }
            Ok(Job::Verify {
                password,
                phc,
                reply,
            }) => {
                let _ = reply.send(verify_with(&password, &phc, &mut memory));
            }
            Err(_) => return,
        }
    }
}

fn blocks(memory: &mut Vec<Block>, params: &Params) -> usize {
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    need
}

fn hash_with(password: &[u8], memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let e = |e: argon2::password_hash::Error| anyhow::anyhow!("argon2: {e}");
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes).map_err(e)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let need = blocks(memory, &params);
    argon
        .hash_password_into_with_memory(password, salt_raw, &mut out, &mut memory[..need])
        .map_err(|x| anyhow::anyhow!("argon2: {x}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(e)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(e)?),
    };
    Ok(phc.to_string())
}

fn verify_with(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let Ok(mut params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST {
        return false;
    }
    // The output length is the stored hash's.
    let Ok(sized) = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    ) else {
        return false;
    };
    params = sized;
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let need = blocks(memory, &params);
    if argon
        .hash_password_into_with_memory(password, salt_raw, &mut out, &mut memory[..need])
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|got| got == expected)
}

/// A PHC string (`$argon2id$v=19$…`) of `password`, on the process-wide pool.
pub async fn hash(password: String) -> anyhow::Result<String> {
    HashPool::global()?.hash(&password).await
}

/// Whether `password` matches the PHC string, on the process-wide pool; [`Busy`] when no worker
/// became free in time. A malformed hash never matches.
pub async fn verify(password: String, phc: String) -> Result<bool, Busy> {
    HashPool::global()?.verify(&password, &phc).await
}

/// A hash to verify against when the user does not exist, so an unknown username takes as long
/// as a wrong password (same algorithm and parameters as every stored hash).
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c21hcnRzaXRlZHVtbXk$2WbR0Zg8jQ8ZkqjQxPp6F3FvL0q5o3n7q1m6hF0v3yU";

/// Refuses weak passwords: at least 10 characters, not all of one kind.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 10 {
        return Err("a password needs at least 10 characters");
    }
    let kinds = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if kinds.iter().filter(|k| **k).count() < 2 {
        return Err("a password needs at least two of: lower case, upper case, digits, symbols");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier as _;
    use argon2::password_hash::PasswordHasher as _;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse 1".into()).await.unwrap();
        let b = hash("correct horse 1".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse 1".into(), a.clone()).await.unwrap());
        assert!(!verify("correct horse 2".into(), a).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
        assert!(!verify("x".into(), DUMMY_HASH.into()).await.unwrap());
    }

    #[tokio::test]
    async fn pool_hashes_are_the_crates_hashes() {
        // Stored before the pool existed (the crate's own hasher) ⇒ the pool verifies them, and
        // the crate verifies the pool's: existing users keep signing in.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"Old-Password-1", &salt)
            .unwrap()
            .to_string();
        assert!(verify("Old-Password-1".into(), old.clone()).await.unwrap());
        assert!(!verify("Old-Password-2".into(), old).await.unwrap());
        let new = hash("New-Password-1".into()).await.unwrap();
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"New-Password-1", &parsed)
                .is_ok()
        );
        // The dummy hash has the stored hashes' parameters, so it costs the same to check.
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(dummy.params, parsed.params);
    }

    #[tokio::test]
    async fn planted_hashes_asking_for_huge_memory_never_verify() {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(MAX_M_COST_KIB * 2, 1, 1, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let big = argon
            .hash_password(b"pw-123456789", &salt)
            .unwrap()
            .to_string();
        assert!(!verify("pw-123456789".into(), big).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_beyond_the_queue_is_told_busy_and_the_rest_verify() {
        let pool = Arc::new(HashPool::new(1).unwrap());
        let flood = pool.max_waiting + 40;
        let tasks: Vec<_> = (0..flood)
            .map(|_| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.verify("guess", DUMMY_HASH).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(Busy) => busy += 1,
            }
        }
        // One worker and 16 waiting: beyond the one running and the 16 queued, a flood is told
        // busy at once instead of piling up (each running hash holds 19 MiB).
        let served_at_most = pool.workers() + pool.max_waiting;
        assert!(
            busy >= flood - served_at_most,
            "{busy} of {flood} told busy"
        );
        assert_eq!(pool.workers(), 1);
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_strength("short1A").is_err());
        assert!(check_strength("alllowercaseletters").is_err());
        assert!(check_strength("Longer-pass-2026").is_ok());
    }
}
