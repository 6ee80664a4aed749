use crate::{CheckResult, Outcome};

/// Levels that do not satisfy `0 <= warn <= fail <= 100`.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("thresholds must satisfy 0 <= warn ({warn_percent}) <= fail ({fail_percent}) <= 100")]
pub struct InvalidThresholds {
    warn_percent: f64,
    fail_percent: f64,
}

/// Warning and failure levels, in percent, for checks that measure how full something is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Above this the check is degraded.
    pub warn_percent: f64,
    /// Above this the check fails.
    pub fail_percent: f64,
}

impl Thresholds {
    /// Warn above `warn_percent`, fail above `fail_percent`. Levels must satisfy
    /// `0 <= warn <= fail <= 100`.
    pub fn new(warn_percent: f64, fail_percent: f64) -> Result<Self, InvalidThresholds> {
        if (0.0..=100.0).contains(&warn_percent) && (warn_percent..=100.0).contains(&fail_percent) {
            Ok(Self {
                warn_percent,
                fail_percent,
            })
        } else {
            Err(InvalidThresholds {
                warn_percent,
                fail_percent,
            })
        }
    }

    pub(crate) const DEFAULT: Self = Self {
        warn_percent: 80.0,
        fail_percent: 90.0,
    };

    /// Judge `used` of `total` (bytes) against the levels.
    pub(crate) fn judge(&self, what: &str, used: u64, total: u64) -> CheckResult {
        if total == 0 {
            return Err(format!("{what}: total size reported as 0").into());
        }
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52 are exact enough
        let percent = used as f64 / total as f64 * 100.0;
        let percent = (percent * 10.0).round() / 10.0;
        let summary = format!("{what}: {} of {} used ({percent}%)", mib(used), mib(total));
        if percent > self.fail_percent {
            return Err(format!("{summary}, above the {}% limit", self.fail_percent).into());
        }
        let outcome = if percent > self.warn_percent {
            Outcome::degraded(format!("{summary}, above the {}% warning level", self.warn_percent))
        } else {
            Outcome::healthy().with_message(summary)
        };
        Ok(outcome.with_observed(percent, "percent"))
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_each_band() {
        let t = Thresholds::DEFAULT;
        let healthy = t.judge("memory", 50, 100).unwrap();
        assert!(!healthy.is_degraded());
        assert_eq!(healthy.observed_value, Some(serde_json::json!(50.0)));
        assert!(t.judge("memory", 85, 100).unwrap().is_degraded());
        let error = t.judge("disk /", 95, 100).unwrap_err().to_string();
        assert!(error.contains("95%") && error.contains("90% limit"), "{error}");
        assert!(t.judge("disk /", 1, 0).is_err());
    }

    #[test]
    fn rejects_inverted_or_out_of_range_levels() {
        assert!(
            Thresholds::new(95.0, 90.0)
                .unwrap_err()
                .to_string()
                .contains("warn (95)")
        );
        assert!(Thresholds::new(80.0, 101.0).is_err());
        assert!(Thresholds::new(-1.0, 90.0).is_err());
        assert_eq!(Thresholds::new(80.0, 90.0).unwrap(), Thresholds::DEFAULT);
    }
}
