//! When to try a callback again (`spec/contract.md` section 4). Pure: the caller supplies the
//! jitter draw, so every rule is testable exactly.

use std::time::Duration;

/// Delays after the 1st..7th failed attempt: 8 attempts over about 27.5 hours.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
pub const MAX_ATTEMPTS: u32 = SCHEDULE.len() as u32 + 1;
/// ±20 %.
pub const JITTER: f64 = 0.2;
/// A receiver that said "slow down" (429) or did not answer gets at least this long.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(60);
/// Success is a 2xx within this time.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// How one attempt ended, as far as the retry rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Any HTTP answer: 2xx is success, the rest failures.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    TimedOut,
    /// The destination is not allowed by the network policy (checked after DNS).
    Blocked,
    /// Connection refused, TLS failure, DNS failure and the like.
    Failed,
}

impl AttemptResult {
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Answered { status: 200..=299, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    RetryAfter(Duration),
    /// No further automatic attempt; the notification is kept and can be redelivered.
    DeadLetter(DeadLetterReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// 410: the receiver says this endpoint is gone for good.
    Gone,
    AttemptsExhausted,
    /// The instance was deleted: its ids are never reused, so no later attempt could be made,
    /// and nobody can list or redeliver its notifications any more.
    InstanceDeleted,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Gone => "the callback answered 410 Gone",
            DeadLetterReason::AttemptsExhausted => "all attempts failed",
            DeadLetterReason::InstanceDeleted => "the instance was deleted",
        }
    }
}

/// Decides after attempt number `attempt` (1-based) of a series. `jitter` is a draw in [-1, 1].
pub fn decide(attempt: u32, result: &AttemptResult, jitter: f64) -> Decision {
    if result.is_success() {
        return Decision::Delivered;
    }
    if matches!(result, AttemptResult::Answered { status: 410, .. }) {
        return Decision::DeadLetter(DeadLetterReason::Gone);
    }
    let Some(&base) = SCHEDULE.get(attempt.saturating_sub(1) as usize) else {
        return Decision::DeadLetter(DeadLetterReason::AttemptsExhausted);
    };
    let mut delay = base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    let slow_down = matches!(result, AttemptResult::TimedOut | AttemptResult::Answered { status: 429, .. });
    if slow_down {
        delay = delay.max(BACKOFF_FLOOR);
    }
    if let AttemptResult::Answered { retry_after: Some(asked), .. } = result {
        delay = (*asked).clamp(delay, delay * 2);
    }
    Decision::RetryAfter(delay)
}

/// Parses `Retry-After`: delta seconds or an HTTP date (relative to `now_unix`).
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now_unix).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> AttemptResult {
        AttemptResult::Answered { status, retry_after: None }
    }

    #[test]
    fn dead_letter_reasons_read_as_the_events_api_shows_them() {
        // `deadLetterReason` in the events API, on both runtimes.
        assert_eq!(DeadLetterReason::Gone.as_str(), "the callback answered 410 Gone");
        assert_eq!(DeadLetterReason::AttemptsExhausted.as_str(), "all attempts failed");
        assert_eq!(DeadLetterReason::InstanceDeleted.as_str(), "the instance was deleted");
    }

    #[test]
    fn any_2xx_is_delivered() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(decide(1, &answered(s), 0.0), Decision::Delivered);
        }
        for s in [100, 301, 304, 400, 404, 500, 503] {
            assert!(matches!(decide(1, &answered(s), 0.0), Decision::RetryAfter(_)), "{s}");
        }
    }

    #[test]
    fn the_schedule_without_jitter() {
        let got: Vec<Duration> = (1..MAX_ATTEMPTS)
            .map(|a| match decide(a, &answered(500), 0.0) {
                Decision::RetryAfter(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, SCHEDULE.to_vec());
        let total: Duration = SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000));
        assert_eq!(MAX_ATTEMPTS, 8);
    }

    #[test]
    fn the_last_attempt_dead_letters() {
        assert_eq!(decide(8, &answered(500), 0.0), Decision::DeadLetter(DeadLetterReason::AttemptsExhausted));
        assert_eq!(decide(9, &AttemptResult::Failed, 0.0), Decision::DeadLetter(DeadLetterReason::AttemptsExhausted));
        assert_eq!(decide(8, &answered(200), 0.0), Decision::Delivered);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(decide(1, &answered(500), 1.0), Decision::RetryAfter(Duration::from_secs(6)));
        assert_eq!(decide(1, &answered(500), -1.0), Decision::RetryAfter(Duration::from_secs(4)));
        assert_eq!(decide(1, &answered(500), 7.0), Decision::RetryAfter(Duration::from_secs(6)));
        assert_eq!(decide(2, &answered(500), 0.5), Decision::RetryAfter(Duration::from_secs(330)));
    }

    #[test]
    fn slow_down_answers_wait_at_least_a_minute() {
        assert_eq!(decide(1, &answered(429), -1.0), Decision::RetryAfter(BACKOFF_FLOOR));
        assert_eq!(decide(1, &AttemptResult::TimedOut, 0.0), Decision::RetryAfter(BACKOFF_FLOOR));
        // The floor does not shorten longer steps.
        assert_eq!(decide(2, &AttemptResult::TimedOut, 0.0), Decision::RetryAfter(Duration::from_secs(300)));
        // Other failures follow the plain schedule.
        assert_eq!(decide(1, &AttemptResult::Failed, 0.0), Decision::RetryAfter(Duration::from_secs(5)));
        assert_eq!(decide(1, &AttemptResult::Blocked, 0.0), Decision::RetryAfter(Duration::from_secs(5)));
    }

    #[test]
    fn retry_after_is_clamped_to_delay_and_twice_delay() {
        let ra = |secs| AttemptResult::Answered { status: 503, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(decide(2, &ra(400), 0.0), Decision::RetryAfter(Duration::from_secs(400)));
        assert_eq!(decide(2, &ra(1), 0.0), Decision::RetryAfter(Duration::from_secs(300)));
        assert_eq!(decide(2, &ra(100_000), 0.0), Decision::RetryAfter(Duration::from_secs(600)));
        let ra429 = AttemptResult::Answered { status: 429, retry_after: Some(Duration::from_secs(90)) };
        assert_eq!(decide(1, &ra429, 0.0), Decision::RetryAfter(Duration::from_secs(90)));
        let ra429 = AttemptResult::Answered { status: 429, retry_after: Some(Duration::from_secs(1000)) };
        assert_eq!(decide(1, &ra429, 0.0), Decision::RetryAfter(Duration::from_secs(120)));
    }

    #[test]
    fn gone_stops_at_once() {
        assert_eq!(decide(1, &answered(410), 0.0), Decision::DeadLetter(DeadLetterReason::Gone));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 120 ", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }
}
