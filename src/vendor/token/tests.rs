use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use secrecy::ExposeSecret;

use super::*;

/// A token source that counts fetches and fails while `failing` is set. Time is paused in
/// these tests, so a real vendor cannot play this part.
struct ScriptedSource {
    fetches: AtomicU32,
    failing: AtomicBool,
    life: Duration,
    delay: Duration,
}

impl ScriptedSource {
    fn new(life_secs: u64) -> Arc<Self> {
        Arc::new(Self {
            fetches: AtomicU32::new(0),
            failing: AtomicBool::new(false),
            life: Duration::from_secs(life_secs),
            delay: Duration::from_millis(50),
        })
    }
    fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for ScriptedSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(VendorError::Status(500));
            }
            Ok(FetchedToken {
                value: SecretString::from(format!("token-{n}")),
                lifetime: self.life,
            })
        })
    }
}

fn cache(source: &Arc<ScriptedSource>) -> Arc<TokenCache> {
    Arc::new(TokenCache::new(Arc::clone(source) as Arc<dyn TokenSource>))
}

#[tokio::test(start_paused = true)]
async fn lifetime_arithmetic() {
    let t0 = Instant::now();
    let l = Lifetime::new(t0, Duration::from_secs(600));
    assert_eq!(l.refresh_at - t0, Duration::from_secs(480));
    assert_eq!(l.usable_until - t0, Duration::from_secs(570));
    assert_eq!(l.expires_at - t0, Duration::from_secs(600));
    // Short lives keep a proportional margin rather than 30 s.
    let short = Lifetime::new(t0, Duration::from_secs(10));
    assert_eq!(short.refresh_at - t0, Duration::from_secs(8));
    assert_eq!(short.usable_until - t0, Duration::from_secs(9));
    // Long lives cap the margin at 30 s.
    let long = Lifetime::new(t0, Duration::from_secs(3600));
    assert_eq!(long.usable_until - t0, Duration::from_secs(3570));
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_fetch() {
    let source = ScriptedSource::new(600);
    let cache = cache(&source);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get()
                    .await
                    .map(|t| t.secret().expose_secret().to_owned())
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(source.fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn refresher_replaces_the_token_at_80_percent() {
    let source = ScriptedSource::new(600);
    let cache = cache(&source);
    let refresher = tokio::spawn(Arc::clone(&cache).run_refresher());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(source.fetches(), 1, "the refresher fetches at start-up");
    tokio::time::sleep(Duration::from_secs(470)).await;
    assert_eq!(source.fetches(), 1);
    assert_eq!(
        cache.get().await.unwrap().secret().expose_secret(),
        "token-1"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(source.fetches(), 2);
    assert_eq!(
        cache.get().await.unwrap().secret().expose_secret(),
        "token-2"
    );
    refresher.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_backed_off_and_the_old_token_keeps_serving() {
    let source = ScriptedSource::new(600);
    let cache = cache(&source);
    let refresher = tokio::spawn(Arc::clone(&cache).run_refresher());
    tokio::time::sleep(Duration::from_secs(1)).await;
    source.failing.store(true, Ordering::SeqCst);
    // Past the refresh point the refresher fails, but the token is still usable.
    tokio::time::sleep(Duration::from_secs(500)).await;
    let fetches_so_far = source.fetches();
    assert!(fetches_so_far >= 2, "the refresher tried again");
    assert_eq!(
        cache.get().await.unwrap().secret().expose_secret(),
        "token-1"
    );
    assert_eq!(
        source.fetches(),
        fetches_so_far,
        "a request with a usable token never fetches"
    );
    // 90 s of failures: exponential back-off means a handful of tries, not one per second.
    tokio::time::sleep(Duration::from_secs(90)).await;
    let tries = source.fetches() - 1;
    assert!(
        (2..=10).contains(&tries),
        "{tries} refresh attempts in 90 s"
    );
    // Past usable_until (570 s) callers are refused without a fetch while backing off.
    let before = source.fetches();
    for _ in 0..20 {
        assert!(matches!(
            cache.get().await,
            Err(TokenUnavailable::BackingOff { .. })
        ));
    }
    assert_eq!(source.fetches(), before);
    // Once the vendor recovers, the refresher brings a new token within the back-off cap.
    source.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(crate::backoff::BACKOFF_CAP + Duration::from_secs(1)).await;
    assert!(
        cache
            .get()
            .await
            .unwrap()
            .secret()
            .expose_secret()
            .starts_with("token-")
    );
    assert!(cache.has_usable_token());
    refresher.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failed_fetch_blocks_fetches_until_the_back_off_passes() {
    let source = ScriptedSource::new(600);
    source.failing.store(true, Ordering::SeqCst);
    let cache = cache(&source);
    assert!(matches!(cache.get().await, Err(TokenUnavailable::Fetch(_))));
    assert!(matches!(
        cache.get().await,
        Err(TokenUnavailable::BackingOff { failures: 1 })
    ));
    assert_eq!(source.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(501)).await;
    source.failing.store(false, Ordering::SeqCst);
    assert!(cache.get().await.is_ok());
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_only_the_token_it_names() {
    let source = ScriptedSource::new(600);
    let cache = cache(&source);
    let first = cache.get().await.unwrap();
    cache.invalidate(&first);
    let second = cache.get().await.unwrap();
    assert_eq!(second.secret().expose_secret(), "token-2");
    // A late 401 about the first token must not throw away the second.
    cache.invalidate(&first);
    assert_eq!(
        cache.get().await.unwrap().secret().expose_secret(),
        "token-2"
    );
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_are_not_used() {
    let source = ScriptedSource::new(10);
    let cache = cache(&source);
    cache.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!cache.has_usable_token());
    assert_eq!(
        cache.get().await.unwrap().secret().expose_secret(),
        "token-2"
    );
    assert!(cache.expires_in().unwrap() > 9.0);
}

#[test]
fn debug_never_shows_the_token() {
    let token = AccessToken {
        secret: SecretString::from("super-secret-token"),
        generation: 1,
        lifetime: Lifetime::new(Instant::now(), Duration::from_secs(1)),
    };
    assert!(!format!("{token:?}").contains("super-secret-token"));
}

#[tokio::test(start_paused = true)]
async fn refused_tokens_back_off_longer_each_time_until_one_is_accepted() {
    let source = ScriptedSource::new(600);
    let cache = cache(&source);
    let first = cache.get().await.unwrap();
    cache.refused(&first);
    assert!(matches!(
        cache.get().await,
        Err(TokenUnavailable::BackingOff { .. })
    ));
    tokio::time::sleep(Duration::from_millis(501)).await;
    let second = cache.get().await.unwrap();
    assert_eq!(second.secret().expose_secret(), "token-2");
    // The fetch worked, yet the second refusal backs off longer (0.5-1 s, not 0.25-0.5 s).
    cache.refused(&second);
    tokio::time::sleep(Duration::from_millis(499)).await;
    assert!(matches!(
        cache.get().await,
        Err(TokenUnavailable::BackingOff { .. })
    ));
    tokio::time::sleep(Duration::from_millis(502)).await;
    let third = cache.get().await.unwrap();
    // Accepted: the next refusal starts over at the shortest delay.
    cache.accepted();
    cache.refused(&third);
    tokio::time::sleep(Duration::from_millis(501)).await;
    assert!(cache.get().await.is_ok());
    assert_eq!(source.fetches(), 4);
}
