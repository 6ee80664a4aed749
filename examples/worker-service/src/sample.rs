//! Synthetic events shaped like the ones the worker stores before v1.3.0, for trying the
//! migration out and for the tests and benchmarks.

use mongodb::bson::{DateTime, Document, doc};

/// User agents the events cycle through: a desktop browser, a phone, Linux, and a tool.
pub const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "curl/8.5.0",
];

/// Event number `n`: `user_id` `n % 977`, `event_type` view/click/purchase in turn, one second
/// older than event `n - 1`, `metadata.n = n`, and a `session_id` on even numbers only.
pub fn event(n: u64, now: DateTime) -> Document {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let event_type = ["view", "click", "purchase"][usize::try_from(n % 3).unwrap_or(0)];
    let user_agent = USER_AGENTS[usize::try_from(n % 4).unwrap_or(0)];
    let mut event = doc! {
        "user_id": n % 977,
        "event_type": event_type,
        "timestamp": DateTime::from_millis(now.timestamp_millis() - n * 1000),
        "created_at": now,
        "user_agent": user_agent,
        "ip_address": format!("198.51.100.{}", n % 250),
        "metadata": { "n": n },
    };
    if n % 2 == 0 {
        event.insert("session_id", format!("s-{}", n / 10));
    }
    event
}

/// Insert `count` events into `events`, 10,000 per bulk insert.
pub async fn insert_events(db: &mongodb::Database, count: u64) -> mongodb::error::Result<()> {
    let events = db.collection::<Document>("events");
    let now = DateTime::now();
    let mut next = 0;
    while next < count {
        let end = (next + 10_000).min(count);
        events.insert_many((next..end).map(|n| event(n, now))).await?;
        next = end;
    }
    Ok(())
}
