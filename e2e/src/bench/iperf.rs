//! The figures of an `iperf3 -J` client report.

use serde_json::Value;

/// Errors reading an iperf3 report.
#[derive(Debug, thiserror::Error)]
pub enum IperfError {
    /// Not JSON.
    #[error("failed to decode the iperf3 JSON report")]
    Decode(#[source] serde_json::Error),
    /// iperf3 reported an error of its own.
    #[error("failed to run iperf3: {0}")]
    Reported(String),
    /// A field is missing.
    #[error("failed to find {0} in the iperf3 report")]
    Missing(&'static str),
}

/// Throughput and retransmits of one TCP run, seen by the sender.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpRun {
    /// Bits per second received (`end.sum_received`).
    pub received_bps: f64,
    /// TCP retransmits of the sender (`end.sum_sent.retransmits`).
    pub retransmits: u64,
    /// Largest congestion window seen (`max_snd_cwnd` of the first stream).
    pub max_cwnd: u64,
}

/// Parses the client's `-J` output.
pub fn parse_tcp_report(json: &str) -> Result<TcpRun, IperfError> {
    let v: Value = serde_json::from_str(json).map_err(IperfError::Decode)?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(IperfError::Reported(e.to_string()));
    }
    let end = v.get("end").ok_or(IperfError::Missing("end"))?;
    let received_bps = end
        .pointer("/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .ok_or(IperfError::Missing("end.sum_received.bits_per_second"))?;
    let retransmits = end
        .pointer("/sum_sent/retransmits")
        .and_then(Value::as_u64)
        .ok_or(IperfError::Missing("end.sum_sent.retransmits"))?;
    let max_cwnd = end
        .pointer("/streams/0/sender/max_snd_cwnd")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(TcpRun {
        received_bps,
        retransmits,
        max_cwnd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_throughput_and_retransmits() {
        let json = r#"{"start":{},"end":{"streams":[{"sender":{"max_snd_cwnd":123}}],
            "sum_sent":{"bits_per_second":2.0e9,"retransmits":7},
            "sum_received":{"bits_per_second":1.5e9}}}"#;
        let run = parse_tcp_report(json).unwrap();
        assert_eq!(run.received_bps, 1.5e9);
        assert_eq!(run.retransmits, 7);
        assert_eq!(run.max_cwnd, 123);
    }

    #[test]
    fn reports_iperf_errors() {
        let err =
            parse_tcp_report(r#"{"start":{},"end":{},"error":"unable to connect"}"#).unwrap_err();
        assert!(err.to_string().contains("unable to connect"), "{err}");
        assert!(matches!(
            parse_tcp_report(r#"{"end":{}}"#),
            Err(IperfError::Missing(_))
        ));
        assert!(matches!(
            parse_tcp_report("nope"),
            Err(IperfError::Decode(_))
        ));
    }
}
