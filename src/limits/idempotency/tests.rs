use super::*;

const SCOPE: [&str; 4] = ["iss", "alice", "a1001", "key-1"];

fn stored(status: u16) -> Stored {
    let outcome = match status {
        200 => Outcome::Accepted,
        422 => Outcome::VendorRejected,
        502 => Outcome::VendorError,
        _ => Outcome::VendorTimeout,
    };
    Stored::new(outcome, "req-1", "the vendor's message")
}

#[tokio::test(start_paused = true)]
async fn the_first_outcome_is_replayed_for_the_same_body() {
    let store = IdempotencyStore::new(Duration::from_secs(86_400), 100);
    let Begin::Proceed(ticket) = store.begin(SCOPE, b"body", Duration::from_secs(1)).await else {
        panic!("the first request proceeds");
    };
    ticket.complete(Some(stored(200)));
    match store.begin(SCOPE, b"body", Duration::from_secs(1)).await {
        Begin::Replay(outcome) => assert_eq!(*outcome, stored(200)),
        _ => panic!("a repeat is replayed"),
    }
    assert!(matches!(
        store.begin(SCOPE, b"other", Duration::from_secs(1)).await,
        Begin::Reused
    ));
    // Another caller, agent or key is another entry.
    let other = ["iss", "bob", "a1001", "key-1"];
    assert!(matches!(
        store.begin(other, b"body", Duration::from_secs(1)).await,
        Begin::Proceed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn outcomes_expire_after_the_ttl() {
    let store = IdempotencyStore::new(Duration::from_secs(60), 100);
    let Begin::Proceed(ticket) = store.begin(SCOPE, b"body", Duration::ZERO).await else {
        panic!()
    };
    ticket.complete(Some(stored(200)));
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(matches!(
        store.begin(SCOPE, b"body", Duration::ZERO).await,
        Begin::Proceed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_released_key_is_processed_anew() {
    let store = IdempotencyStore::new(Duration::from_secs(60), 100);
    let Begin::Proceed(ticket) = store.begin(SCOPE, b"body", Duration::ZERO).await else {
        panic!()
    };
    ticket.complete(None);
    assert!(matches!(
        store.begin(SCOPE, b"body", Duration::ZERO).await,
        Begin::Proceed(_)
    ));
    // Dropping a ticket releases too.
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_repeat_in_flight_waits_for_the_first() {
    let store = Arc::new(IdempotencyStore::new(Duration::from_secs(60), 100));
    let Begin::Proceed(ticket) = store.begin(SCOPE, b"body", Duration::ZERO).await else {
        panic!()
    };
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            match store.begin(SCOPE, b"body", Duration::from_secs(10)).await {
                Begin::Replay(outcome) => Some(outcome.status()),
                _ => None,
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    ticket.complete(Some(stored(422)));
    assert_eq!(waiter.await.unwrap(), Some(422));
    // A waiter that runs out of patience is told so.
    let Begin::Proceed(_slow) = store
        .begin(["i", "s", "a", "k2"], b"b", Duration::ZERO)
        .await
    else {
        panic!()
    };
    assert!(matches!(
        store
            .begin(["i", "s", "a", "k2"], b"b", Duration::from_secs(1))
            .await,
        Begin::Busy
    ));
}

#[tokio::test(start_paused = true)]
async fn capacity_evicts_the_oldest() {
    let store = IdempotencyStore::new(Duration::from_secs(600), 2);
    for key in ["k1", "k2", "k3"] {
        let Begin::Proceed(t) = store
            .begin(["i", "s", "a", key], b"b", Duration::ZERO)
            .await
        else {
            panic!()
        };
        t.complete(Some(stored(200)));
    }
    assert_eq!(store.len(), 2);
    assert!(matches!(
        store
            .begin(["i", "s", "a", "k1"], b"b", Duration::ZERO)
            .await,
        Begin::Proceed(_)
    ));
    assert!(matches!(
        store
            .begin(["i", "s", "a", "k3"], b"b", Duration::ZERO)
            .await,
        Begin::Replay(_)
    ));
}

#[test]
fn key_syntax() {
    assert!(valid_key("0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert!(!valid_key(""));
    assert!(!valid_key("has space"));
    assert!(!valid_key(&"k".repeat(129)));
    assert!(valid_key(&"k".repeat(128)));
}

#[tokio::test(start_paused = true)]
async fn capacity_never_evicts_a_request_in_flight() {
    let store = IdempotencyStore::new(Duration::from_secs(600), 1);
    let Begin::Proceed(first) = store
        .begin(["i", "s", "a", "k1"], b"b", Duration::ZERO)
        .await
    else {
        panic!()
    };
    // The store is full of an entry in flight: a new key still proceeds...
    let Begin::Proceed(_second) = store
        .begin(["i", "s", "a", "k2"], b"b", Duration::ZERO)
        .await
    else {
        panic!()
    };
    // ...and a retry of the first still waits for it rather than running beside it.
    assert!(matches!(
        store
            .begin(["i", "s", "a", "k1"], b"b", Duration::from_millis(10))
            .await,
        Begin::Busy
    ));
    first.complete(Some(stored(200)));
}

#[tokio::test(start_paused = true)]
async fn the_byte_budget_forgets_the_oldest_finished_outcomes_first() {
    let entry = ENTRY_BYTES + stored(200).heap_bytes();
    let store = IdempotencyStore::new(Duration::from_secs(600), 100).with_budget(3 * entry);
    let scope = |key: &'static str| ["i", "s", "a", key];
    // k0 stays in flight; k1 and k2 finish: the budget is spent.
    let Begin::Proceed(in_flight) = store.begin(scope("k0"), b"b", Duration::ZERO).await else {
        panic!()
    };
    for key in ["k1", "k2"] {
        let Begin::Proceed(t) = store.begin(scope(key), b"b", Duration::ZERO).await else {
            panic!()
        };
        t.complete(Some(stored(200)));
    }
    assert_eq!(store.len(), 3);
    assert!(store.bytes() <= 3 * entry);
    // k3 needs room: k1, the oldest finished outcome, goes; k0 (older, in flight) stays.
    let Begin::Proceed(t) = store.begin(scope("k3"), b"b", Duration::ZERO).await else {
        panic!()
    };
    t.complete(Some(stored(200)));
    assert_eq!(store.len(), 3);
    assert!(store.bytes() <= 3 * entry, "{}", store.bytes());
    assert!(matches!(
        store.begin(scope("k2"), b"b", Duration::ZERO).await,
        Begin::Replay(_)
    ));
    assert!(matches!(
        store
            .begin(scope("k0"), b"b", Duration::from_millis(10))
            .await,
        Begin::Busy
    ));
    in_flight.complete(Some(stored(200)));
    assert!(
        matches!(
            store.begin(scope("k1"), b"b", Duration::ZERO).await,
            Begin::Proceed(_)
        ),
        "k1 was forgotten"
    );
    // Released and expired entries give their bytes back.
    drop(store.begin(scope("k9"), b"b", Duration::ZERO).await);
    tokio::time::advance(Duration::from_secs(601)).await;
    store.purge();
    assert_eq!((store.len(), store.bytes()), (0, 0));
}
