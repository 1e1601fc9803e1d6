//! The wall clock, in the milliseconds the store and the ECS API count in. The one impure
//! function the application layer and the agent service share; everything below them takes
//! the time as an argument.

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
