//! The figures of a dnsperf (2.x) run: its statistics block and, with
//! `-v`, one latency per answered query.

use std::time::Duration;

/// Errors reading dnsperf output.
#[derive(Debug, thiserror::Error)]
pub enum DnsperfError {
    /// A statistics line is missing (dnsperf failed early).
    #[error("failed to find {0:?} in the dnsperf output")]
    Missing(&'static str),
}

/// One run's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsperfRun {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered.
    pub completed: u64,
    /// Queries lost (timed out).
    pub lost: u64,
    /// Answered queries per second.
    pub qps: f64,
    /// Mean latency.
    pub avg_latency: Duration,
    /// The `Response codes:` line as printed.
    pub rcodes: String,
    /// Per-query latencies (only with `-v`).
    pub latencies: Vec<Duration>,
}

fn field<'a>(text: &'a str, label: &'static str) -> Result<&'a str, DnsperfError> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .ok_or(DnsperfError::Missing(label))
}

fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// Parses dnsperf's stdout.
pub fn parse(text: &str) -> Result<DnsperfRun, DnsperfError> {
    let num = |label: &'static str| -> Result<f64, DnsperfError> {
        first_number(field(text, label)?).ok_or(DnsperfError::Missing(label))
    };
    let latencies = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    Ok(DnsperfRun {
        sent: num("Queries sent:")? as u64,
        completed: num("Queries completed:")? as u64,
        lost: num("Queries lost:")? as u64,
        qps: num("Queries per second:")?,
        avg_latency: Duration::from_secs_f64(num("Average Latency (s):")?),
        rcodes: field(text, "Response codes:").unwrap_or("").to_string(),
        latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "[Status] Sending queries (to 127.0.0.1:53)
> NOERROR a.x.test A 0.000354
> NXDOMAIN b.x.test A 0.001000
Statistics:

  Queries sent:         1000
  Queries completed:    998 (99.80%)
  Queries lost:         2 (0.20%)

  Response codes:       NOERROR 500 (50.00%), NXDOMAIN 498 (49.80%)
  Run time (s):         1.000074
  Queries per second:   999.926005

  Average Latency (s):  0.000508 (min 0.000008, max 0.012328)
";

    #[test]
    fn reads_statistics_and_latencies() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!((r.sent, r.completed, r.lost), (1000, 998, 2));
        assert!((r.qps - 999.926005).abs() < 1e-9);
        assert_eq!(r.avg_latency, Duration::from_micros(508));
        assert!(r.rcodes.starts_with("NOERROR 500"));
        assert_eq!(
            r.latencies,
            vec![Duration::from_micros(354), Duration::from_millis(1)]
        );
    }

    #[test]
    fn missing_statistics_is_an_error() {
        assert!(matches!(
            parse("Error: could not open file"),
            Err(DnsperfError::Missing(_))
        ));
    }
}
