//! The storage contract: every adapter of the `Store` port must pass these cases, unchanged.
//! `store_contract!(fixture)` expands to one `#[tokio::test]` per case; a fixture returns a fresh,
//! empty store (its own file or its own table) plus a guard that keeps it alive.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::{
    Attr, BatchOp, Condition, Cursor, Item, Key, MAX_FILTERED_READS, Pk, Query, SkCond, Store,
    StoreError, TxOp, now_epoch, query_filtered,
};

pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub _guard: Box<dyn Any + Send + Sync>,
}

#[macro_export]
macro_rules! store_contract {
    ($fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let f = $fixture().await;
                contract::$case(&*f.store).await;
            }
        )*
    };
    ($fixture:path) => {
        store_contract!($fixture;
            put_get_round_trips_every_attribute_type,
            conditional_put_conflicts,
            conditional_delete,
            transaction_is_all_or_nothing,
            transaction_shape_limits,
            pagination_across_pages_forward_and_backward,
            sort_key_conditions,
            index_queries_follow_item_updates,
            index_pagination,
            counters_are_exact_under_concurrency,
            ttl_hides_expired_items,
            batch_write_many_items,
            cursors_are_bound_to_their_query,
            get_many_answers_in_key_order,
            get_many_beyond_one_batch_keeps_order_duplicates_and_gaps,
            filtered_pages_walk_every_match_once,
        );
    };
}

fn pk(name: &str) -> Pk {
    let i = IntegratorId::parse("contract").unwrap();
    keys::entity(&i, EntityKind::Test, name)
}

fn key(p: &Pk, sk: &str) -> Key {
    Key::new(p.clone(), sk)
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.key.sk.clone()).collect()
}

/// The sort keys `gsi1` lists under `owner`, in index order.
async fn owned_by(s: &dyn Store, owner: &str) -> Vec<String> {
    sks(&s.query(Query::index("gsi1", owner)).await.unwrap().items)
}

pub async fn put_get_round_trips_every_attribute_type(s: &dyn Store) {
    let p = pk("roundtrip");
    let mut m = std::collections::BTreeMap::new();
    m.insert("inner".to_owned(), Attr::N(-7));
    let item = Item::new(key(&p, "a"))
        .with("s", "文明施工")
        .with("n", i64::MAX)
        .with("neg", -42)
        .with("b", vec![0u8, 159, 255])
        .with("t", true)
        .with("null", Attr::Null)
        .with("l", Attr::L(vec![Attr::S("x".into()), Attr::N(1)]))
        .with("m", Attr::M(m));
    s.put(item.clone(), None).await.unwrap();
    assert_eq!(s.get(&key(&p, "a")).await.unwrap(), Some(item));
    assert_eq!(s.get(&key(&p, "missing")).await.unwrap(), None);
    // Unconditional put overwrites the whole item.
    s.put(Item::new(key(&p, "a")).with("only", 1), None)
        .await
        .unwrap();
    let got = s.get(&key(&p, "a")).await.unwrap().unwrap();
    assert_eq!(got.attrs().len(), 1);
    assert_eq!(got.n("only"), Some(1));
}

pub async fn get_many_answers_in_key_order(s: &dyn Store) {
    let p = pk("many");
    for sk in ["a", "c"] {
        s.put(Item::new(key(&p, sk)).with("v", sk), None)
            .await
            .unwrap();
    }
    s.put(Item::new(key(&p, "gone")).with_ttl(now_epoch() - 10), None)
        .await
        .unwrap();
    let keys = [key(&p, "c"), key(&p, "b"), key(&p, "a"), key(&p, "gone")];
    let got = s.get_many(&keys).await.unwrap();
    let vals: Vec<Option<String>> = got
        .iter()
        .map(|i| i.as_ref().and_then(|i| i.s("v")).map(str::to_owned))
        .collect();
    assert_eq!(vals, vec![Some("c".into()), None, Some("a".into()), None]);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
}

/// More keys than one BatchGetItem takes (100), with keys named twice, keys never written and
/// an expired item among them: the answer has one entry per key, in the keys' order.
pub async fn get_many_beyond_one_batch_keeps_order_duplicates_and_gaps(s: &dyn Store) {
    let p = pk("many-batches");
    let live: Vec<String> = (0..230).map(|n| format!("k{n:03}")).collect();
    let mut writes: Vec<BatchOp> = live
        .iter()
        .map(|sk| BatchOp::Put(Item::new(key(&p, sk)).with("v", sk.as_str())))
        .collect();
    writes.push(BatchOp::Put(
        Item::new(key(&p, "expired")).with_ttl(now_epoch() - 10),
    ));
    s.batch_write(writes).await.unwrap();

    // Reverse order, every seventh key asked twice (once at once, once at the end), a missing key
    // after every tenth and the expired one in the middle.
    let mut asked: Vec<String> = Vec::new();
    for (n, sk) in live.iter().rev().enumerate() {
        asked.push(sk.clone());
        if n % 7 == 0 {
            asked.push(sk.clone());
        }
        if n % 10 == 0 {
            asked.push(format!("missing{n}"));
        }
        if n == 115 {
            asked.push("expired".into());
        }
    }
    asked.extend(live.iter().step_by(7).cloned());
    assert!(asked.len() > 300);
    let keys: Vec<Key> = asked.iter().map(|sk| key(&p, sk)).collect();
    let got = s.get_many(&keys).await.unwrap();
    assert_eq!(got.len(), keys.len());
    for (k, item) in keys.iter().zip(&got) {
        let expected = live.contains(&k.sk).then(|| k.sk.clone());
        assert_eq!(
            item.as_ref().map(|i| i.key.clone()),
            expected.as_ref().map(|_| k.clone())
        );
        assert_eq!(
            item.as_ref().and_then(|i| i.s("v")).map(str::to_owned),
            expected,
            "key {}",
            k.sk
        );
    }
}

/// Every match of a filtered query, read `limit` at a time by following the cursor.
async fn walk_filtered(s: &dyn Store, q: Query, limit: u32) -> Vec<String> {
    let mut got = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..1_000 {
        let (items, next) = query_filtered(s, q.clone(), limit, cursor, |i: &Item| {
            Ok::<_, StoreError>(
                (i.attr("keep") == Some(&Attr::Bool(true))).then(|| i.key.sk.clone()),
            )
        })
        .await
        .unwrap();
        assert!(items.len() <= limit as usize, "{items:?}");
        got.extend(items);
        match next {
            Some(c) => cursor = Some(c),
            None => return got,
        }
    }
    panic!("the cursor never ran out")
}

/// A filtered page reads on until it holds `limit` matches, cuts at the last one kept, and its
/// cursor continues exactly there: walked a few at a time, forward or backward, every match
/// comes once and in order. A filter nothing passes reads a bounded amount per page.
pub async fn filtered_pages_walk_every_match_once(s: &dyn Store) {
    let p = pk("filtered");
    let puts = (0..40)
        .map(|n| BatchOp::Put(Item::new(key(&p, &format!("k{n:02}"))).with("keep", n % 3 == 0)))
        .collect();
    s.batch_write(puts).await.unwrap();
    let want: Vec<String> = (0..40)
        .filter(|n| n % 3 == 0)
        .map(|n| format!("k{n:02}"))
        .collect();
    for limit in [1, 2, 5, 14, 50] {
        assert_eq!(
            walk_filtered(s, Query::partition(&p), limit).await,
            want,
            "limit {limit}"
        );
    }
    let mut back = want.clone();
    back.reverse();
    assert_eq!(
        walk_filtered(s, Query::partition(&p).backward(), 3).await,
        back
    );
    let (none, next) = query_filtered(s, Query::partition(&p), 1, None, |_: &Item| {
        Ok::<Option<()>, StoreError>(None)
    })
    .await
    .unwrap();
    // Forty items, a page of one: the reads stop after MAX_FILTERED_READS with a cursor.
    assert!(none.is_empty() && next.is_some() && MAX_FILTERED_READS < 40);
}

pub async fn conditional_put_conflicts(s: &dyn Store) {
    let p = pk("cond");
    let k = key(&p, "x");
    s.put(
        Item::new(k.clone()).with("version", 1),
        Some(Condition::NotExists),
    )
    .await
    .unwrap();
    let again = s
        .put(
            Item::new(k.clone()).with("version", 9),
            Some(Condition::NotExists),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::ConditionFailed)),
        "{again:?}"
    );
    assert_eq!(s.get(&k).await.unwrap().unwrap().n("version"), Some(1));

    // Optimistic concurrency on an attribute.
    let stale = s
        .put(
            Item::new(k.clone()).with("version", 3),
            Some(Condition::equals("version", 2)),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::ConditionFailed)));
    s.put(
        Item::new(k.clone()).with("version", 2),
        Some(Condition::equals("version", 1)),
    )
    .await
    .unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap().n("version"), Some(2));

    let missing = key(&p, "nobody");
    let r = s
        .put(Item::new(missing.clone()), Some(Condition::Exists))
        .await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
    let r = s
        .put(
            Item::new(missing.clone()),
            Some(Condition::equals("version", 1)),
        )
        .await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
    assert_eq!(s.get(&missing).await.unwrap(), None);
    s.put(Item::new(k.clone()).with("v", "y"), Some(Condition::Exists))
        .await
        .unwrap();
}

pub async fn conditional_delete(s: &dyn Store) {
    let p = pk("del");
    let k = key(&p, "x");
    s.put(Item::new(k.clone()).with("state", "open"), None)
        .await
        .unwrap();
    let r = s
        .delete(&k, Some(Condition::equals("state", "closed")))
        .await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
    assert!(s.get(&k).await.unwrap().is_some());
    s.delete(&k, Some(Condition::equals("state", "open")))
        .await
        .unwrap();
    assert_eq!(s.get(&k).await.unwrap(), None);
    let r = s.delete(&k, Some(Condition::Exists)).await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
    // Unconditional delete of an absent item is fine.
    s.delete(&k, None).await.unwrap();
}

pub async fn transaction_is_all_or_nothing(s: &dyn Store) {
    let p = pk("tx");
    s.put(Item::new(key(&p, "guard")).with("state", "locked"), None)
        .await
        .unwrap();
    s.put(Item::new(key(&p, "doomed")), None).await.unwrap();
    let failing = vec![
        TxOp::Put {
            item: Item::new(key(&p, "a")).with("n", 1),
            cond: None,
        },
        TxOp::Delete {
            key: key(&p, "doomed"),
            cond: None,
        },
        TxOp::Add {
            key: key(&p, "counter"),
            deltas: vec![("n".into(), 5), ("m".into(), -2)],
            cond: None,
        },
        TxOp::Check {
            key: key(&p, "guard"),
            cond: Condition::equals("state", "open"),
        },
    ];
    let r = s.transact(failing).await;
    assert!(
        matches!(r, Err(StoreError::TransactionConditionFailed { index: 3 })),
        "{r:?}"
    );
    assert_eq!(
        s.get(&key(&p, "a")).await.unwrap(),
        None,
        "no write of a failed transaction lands"
    );
    assert!(s.get(&key(&p, "doomed")).await.unwrap().is_some());
    assert_eq!(s.get(&key(&p, "counter")).await.unwrap(), None);

    let ok = vec![
        TxOp::Put {
            item: Item::new(key(&p, "a")).with("n", 1),
            cond: Some(Condition::NotExists),
        },
        TxOp::Delete {
            key: key(&p, "doomed"),
            cond: Some(Condition::Exists),
        },
        TxOp::Add {
            key: key(&p, "counter"),
            deltas: vec![("n".into(), 5), ("m".into(), -2)],
            cond: None,
        },
        TxOp::Check {
            key: key(&p, "guard"),
            cond: Condition::equals("state", "locked"),
        },
    ];
    s.transact(ok).await.unwrap();
    assert_eq!(s.get(&key(&p, "a")).await.unwrap().unwrap().n("n"), Some(1));
    assert_eq!(s.get(&key(&p, "doomed")).await.unwrap(), None);
    let counter = s.get(&key(&p, "counter")).await.unwrap().unwrap();
    assert_eq!(
        (counter.n("n"), counter.n("m")),
        (Some(5), Some(-2)),
        "every attribute of a multi-attribute ADD moves"
    );

    // The first failing condition is the one reported.
    let r = s
        .transact(vec![
            TxOp::Put {
                item: Item::new(key(&p, "b")),
                cond: None,
            },
            TxOp::Put {
                item: Item::new(key(&p, "a")),
                cond: Some(Condition::NotExists),
            },
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::TransactionConditionFailed { index: 1 })),
        "{r:?}"
    );
    assert_eq!(s.get(&key(&p, "b")).await.unwrap(), None);
}

pub async fn transaction_shape_limits(s: &dyn Store) {
    let p = pk("txlimits");
    let puts = |n: usize| -> Vec<TxOp> {
        (0..n)
            .map(|i| TxOp::Put {
                item: Item::new(key(&p, &format!("{i:03}"))),
                cond: None,
            })
            .collect()
    };
    s.transact(puts(100)).await.unwrap();
    let page = s.query(Query::partition(&p)).await.unwrap();
    assert_eq!(page.items.len(), 100);
    assert!(matches!(
        s.transact(puts(101)).await,
        Err(StoreError::Invalid(_))
    ));
    let dup = vec![
        TxOp::Put {
            item: Item::new(key(&p, "x")),
            cond: None,
        },
        TxOp::Delete {
            key: key(&p, "x"),
            cond: None,
        },
    ];
    assert!(matches!(s.transact(dup).await, Err(StoreError::Invalid(_))));
}

async fn collect_pages(s: &dyn Store, q: Query, limit: u32) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.query(q.clone().limit(limit).after(cursor)).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= limit as usize);
        all.extend(sks(&page.items));
        match page.next {
            Some(c) => {
                assert_eq!(
                    page.items.len(),
                    limit as usize,
                    "a page with a cursor is full"
                );
                cursor = Some(c);
            }
            None => break,
        }
        assert!(pages < 1000, "pagination does not terminate");
    }
    (all, pages)
}

pub async fn pagination_across_pages_forward_and_backward(s: &dyn Store) {
    let p = pk("pages");
    let other = pk("pages-other");
    let mut expect: Vec<String> = (0..57).map(|i| keys::seq_sk("E", i)).collect();
    let mut ops: Vec<BatchOp> = expect
        .iter()
        .map(|sk| BatchOp::Put(Item::new(key(&p, sk)).with("x", 1)))
        .collect();
    ops.push(BatchOp::Put(Item::new(key(&other, "E#0"))));
    s.batch_write(ops).await.unwrap();

    let (fwd, pages) = collect_pages(s, Query::partition(&p), 10).await;
    assert_eq!(fwd, expect);
    assert_eq!(pages, 6);
    let (bwd, _) = collect_pages(s, Query::partition(&p).backward(), 10).await;
    expect.reverse();
    assert_eq!(bwd, expect);
    // An exact multiple of the limit ends without an empty trailing page.
    let q = Query::partition(&p).sk(SkCond::Lt(keys::seq_sk("E", 20)));
    let (first20, pages) = collect_pages(s, q, 10).await;
    assert_eq!((first20.len(), pages), (20, 2));
    // No limit: everything in one page.
    let all = s.query(Query::partition(&p)).await.unwrap();
    assert_eq!((all.items.len(), all.next.is_none()), (57, true));
}

pub async fn sort_key_conditions(s: &dyn Store) {
    let p = pk("skc");
    let names = ["A#1", "A#2", "A#10", "B", "B#1", "Ba", "C"];
    s.batch_write(
        names
            .iter()
            .map(|n| BatchOp::Put(Item::new(key(&p, n))))
            .collect(),
    )
    .await
    .unwrap();
    let run = |c: SkCond| {
        let q = Query::partition(&p).sk(c);
        async move { sks(&s.query(q).await.unwrap().items) }
    };
    assert_eq!(
        run(SkCond::BeginsWith("A#".into())).await,
        ["A#1", "A#10", "A#2"]
    );
    assert_eq!(
        run(SkCond::BeginsWith("B".into())).await,
        ["B", "B#1", "Ba"]
    );
    assert_eq!(run(SkCond::Eq("B".into())).await, ["B"]);
    assert_eq!(
        run(SkCond::Between("A#10".into(), "B#1".into())).await,
        ["A#10", "A#2", "B", "B#1"]
    );
    assert_eq!(run(SkCond::Lt("B".into())).await, ["A#1", "A#10", "A#2"]);
    assert_eq!(
        run(SkCond::Le("B".into())).await,
        ["A#1", "A#10", "A#2", "B"]
    );
    assert_eq!(run(SkCond::Gt("B".into())).await, ["B#1", "Ba", "C"]);
    assert_eq!(run(SkCond::Ge("Ba".into())).await, ["Ba", "C"]);
    let q = Query::partition(&p)
        .sk(SkCond::BeginsWith("A#".into()))
        .backward()
        .limit(2);
    assert_eq!(sks(&s.query(q).await.unwrap().items), ["A#2", "A#10"]);
}

pub async fn index_queries_follow_item_updates(s: &dyn Store) {
    let gsi = s.table().index("gsi1").unwrap().clone();
    let (p1, p2) = (pk("idx-1"), pk("idx-2"));
    let put = |p: &Pk, sk: &str, gpk: &str, gsk: &str| {
        Item::new(key(p, sk))
            .with_index_key(&gsi, gpk, gsk)
            .with("owner", sk)
    };
    s.put(put(&p1, "u1", "USER#alice", "2026-01-02"), None)
        .await
        .unwrap();
    s.put(put(&p2, "u2", "USER#alice", "2026-01-01"), None)
        .await
        .unwrap();
    s.put(put(&p2, "u3", "USER#bob", "2026-01-01"), None)
        .await
        .unwrap();
    s.put(Item::new(key(&p2, "not-indexed")), None)
        .await
        .unwrap();

    let page = s.query(Query::index("gsi1", "USER#alice")).await.unwrap();
    assert_eq!(
        sks(&page.items),
        ["u2", "u1"],
        "ordered by index sort key, across partitions"
    );
    assert_eq!(page.items[0].key.pk, p2);
    let q = Query::index("gsi1", "USER#alice").sk(SkCond::BeginsWith("2026-01-02".into()));
    assert_eq!(sks(&s.query(q).await.unwrap().items), ["u1"]);

    // Moving an item to another index key removes it from the old one.
    s.put(put(&p1, "u1", "USER#bob", "2026-01-03"), None)
        .await
        .unwrap();
    assert_eq!(owned_by(s, "USER#alice").await, ["u2"]);
    let bob = s
        .query(Query::index("gsi1", "USER#bob").backward())
        .await
        .unwrap();
    assert_eq!(sks(&bob.items), ["u1", "u3"]);
    // So does a conditional move inside a transaction, and a conditional single put.
    s.transact(vec![TxOp::Put {
        item: put(&p1, "u1", "USER#carol", "2026-01-04"),
        cond: Some(Condition::Exists),
    }])
    .await
    .unwrap();
    s.put(
        put(&p2, "u3", "USER#carol", "2026-01-05"),
        Some(Condition::equals("owner", "u3")),
    )
    .await
    .unwrap();
    assert!(owned_by(s, "USER#bob").await.is_empty());
    assert_eq!(owned_by(s, "USER#carol").await, ["u1", "u3"]);
    // Deleting removes it from the index.
    s.delete(&key(&p2, "u2"), None).await.unwrap();
    assert!(owned_by(s, "USER#alice").await.is_empty());
    let nope = s.query(Query::index("no-such-index", "x")).await;
    assert!(matches!(nope, Err(StoreError::Invalid(_))));
}

pub async fn index_pagination(s: &dyn Store) {
    let gsi = s.table().index("gsi1").unwrap().clone();
    let p = pk("idxpages");
    // Equal index sort keys: the table key breaks ties, and paging must not lose any.
    let ops = (0..23)
        .map(|i| {
            BatchOp::Put(Item::new(key(&p, &format!("{i:02}"))).with_index_key(
                &gsi,
                "REGION#220102",
                "same",
            ))
        })
        .collect();
    s.batch_write(ops).await.unwrap();
    let (got, pages) = collect_pages(s, Query::index("gsi1", "REGION#220102"), 5).await;
    assert_eq!(pages, 5);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 23);
    let (back, _) = collect_pages(s, Query::index("gsi1", "REGION#220102").backward(), 7).await;
    assert_eq!(back.iter().collect::<BTreeSet<_>>().len(), 23);
}

pub async fn counters_are_exact_under_concurrency(s: &dyn Store) {
    // Shares the store across tasks the way handlers do.
    let p = pk("ctr");
    let k = key(&p, "messages");
    const TASKS: i64 = 8;
    const ADDS: i64 = 25;
    let store: &dyn Store = s;
    let futs = (0..TASKS).map(|t| {
        let k = k.clone();
        async move {
            let mut seen = Vec::new();
            for _ in 0..ADDS {
                seen.push(store.add(&k, "count", t + 1).await.unwrap());
            }
            seen
        }
    });
    let results: Vec<Vec<i64>> = futures_join_all(futs).await;
    let expected: i64 = (1..=TASKS).map(|d| d * ADDS).sum();
    assert_eq!(s.get(&k).await.unwrap().unwrap().n("count"), Some(expected));
    // Every returned value is distinct: no two adds observed the same state.
    let all: BTreeSet<i64> = results.into_iter().flatten().collect();
    assert_eq!(all.len() as i64, TASKS * ADDS);
    assert_eq!(s.add(&k, "count", -expected).await.unwrap(), 0);
    s.put(Item::new(k.clone()).with("count", "text"), None)
        .await
        .unwrap();
    assert!(
        s.add(&k, "count", 1).await.is_err(),
        "adding to a string fails"
    );
}

async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    futures::future::join_all(futs).await
}

pub async fn ttl_hides_expired_items(s: &dyn Store) {
    let gsi = s.table().index("gsi1").unwrap().clone();
    let p = pk("ttl");
    let now = now_epoch();
    let expired = Item::new(key(&p, "old"))
        .with_ttl(now - 60)
        .with_index_key(&gsi, "TTL", "1");
    let fresh = Item::new(key(&p, "new"))
        .with_ttl(now + 3600)
        .with_index_key(&gsi, "TTL", "2");
    s.put(expired, None).await.unwrap();
    s.put(fresh, None).await.unwrap();
    assert_eq!(s.get(&key(&p, "old")).await.unwrap(), None);
    assert!(s.get(&key(&p, "new")).await.unwrap().is_some());
    assert_eq!(
        sks(&s.query(Query::partition(&p)).await.unwrap().items),
        ["new"]
    );
    assert_eq!(
        sks(&s.query(Query::index("gsi1", "TTL")).await.unwrap().items),
        ["new"]
    );
    // Conditions see an expired item as absent.
    let r = s
        .put(
            Item::new(key(&p, "old")).with("v", 1),
            Some(Condition::Exists),
        )
        .await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
    s.put(
        Item::new(key(&p, "old")).with("v", 2),
        Some(Condition::NotExists),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get(&key(&p, "old")).await.unwrap().unwrap().n("v"),
        Some(2)
    );
    let r = s
        .put(Item::new(key(&p, "new")), Some(Condition::NotExists))
        .await;
    assert!(matches!(r, Err(StoreError::ConditionFailed)));
}

pub async fn batch_write_many_items(s: &dyn Store) {
    let p = pk("batch");
    let ops = (0..120)
        .map(|i| BatchOp::Put(Item::new(key(&p, &format!("{i:03}"))).with("i", i)))
        .collect();
    s.batch_write(ops).await.unwrap();
    assert_eq!(
        s.query(Query::partition(&p)).await.unwrap().items.len(),
        120
    );
    let dels = (0..120)
        .step_by(2)
        .map(|i| BatchOp::Delete(key(&p, &format!("{i:03}"))))
        .collect();
    s.batch_write(dels).await.unwrap();
    let left = s.query(Query::partition(&p)).await.unwrap().items;
    assert_eq!(left.len(), 60);
    assert!(left.iter().all(|i| i.n("i").unwrap() % 2 == 1));
    s.batch_write(Vec::new()).await.unwrap();
}

pub async fn cursors_are_bound_to_their_query(s: &dyn Store) {
    let (a, b) = (pk("cur-a"), pk("cur-b"));
    for p in [&a, &b] {
        s.batch_write(
            (0..3)
                .map(|i| BatchOp::Put(Item::new(key(p, &i.to_string()))))
                .collect(),
        )
        .await
        .unwrap();
    }
    let page = s.query(Query::partition(&a).limit(1)).await.unwrap();
    let cursor = page.next.unwrap();
    let r = s
        .query(Query::partition(&b).limit(1).after(Some(cursor)))
        .await;
    assert!(matches!(r, Err(StoreError::BadCursor)), "{r:?}");
    let garbage = smartsite_shared::store::Cursor::from_client("not a cursor!");
    let r = s.query(Query::partition(&a).after(Some(garbage))).await;
    assert!(matches!(r, Err(StoreError::BadCursor)), "{r:?}");
}
