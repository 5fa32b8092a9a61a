//! The API server's clock: its `Date` header (RFC 9110 IMF-fixdate, e.g.
//! `Sun, 06 Nov 1994 08:49:37 GMT`) on a `GET /version`, read through the
//! same client configuration the agent uses (kubeconfig or in-cluster).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gather::PROBE_TIMEOUT;
use super::readings::ClockReading;

/// Parses an IMF-fixdate; `None` for anything else.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let mut words = text.split_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        words.next()?,
        words.next()?,
        words.next()?,
        words.next()?,
        words.next()?,
        words.next()?,
    );
    if zone != "GMT" || words.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Where the API is.
#[derive(Clone, Debug)]
pub enum Api {
    /// Not checked (no API: files source).
    None,
    /// `KUBECONFIG`, `~/.kube/config` or in-cluster, as the agent finds it.
    Infer,
    /// This kubeconfig.
    Kubeconfig(std::path::PathBuf),
}

async fn client(api: &Api) -> Result<Option<kube::Client>, String> {
    let config = match api {
        Api::None => return Ok(None),
        Api::Infer => match kube::Config::infer().await {
            Ok(c) => c,
            // Nothing configured here: not the doctor's to judge.
            Err(_) => return Ok(None),
        },
        Api::Kubeconfig(path) => kubeconfig(path).await?,
    };
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| format!("failed to build the API client: {e}"))
}

async fn kubeconfig(path: &Path) -> Result<kube::Config, String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| format!("failed to load {}: {e}", path.display()))
}

/// Reads the API server's `Date` against the local clock.
pub async fn read(api: &Api) -> ClockReading {
    let client = match client(api).await {
        Ok(Some(c)) => c,
        Ok(None) => return ClockReading::NoApi,
        Err(e) => return ClockReading::Failed(e),
    };
    let req = match http::Request::get("/version").body(kube::client::Body::from(Vec::new())) {
        Ok(r) => r,
        Err(e) => return ClockReading::Failed(e.to_string()),
    };
    let before = SystemTime::now();
    let resp = match tokio::time::timeout(PROBE_TIMEOUT, client.send(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ClockReading::Failed(format!("GET /version failed: {e}")),
        Err(_) => return ClockReading::Failed(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    let after = SystemTime::now();
    let date = resp.headers().get(http::header::DATE);
    match date.and_then(|d| d.to_str().ok()).and_then(parse_http_date) {
        Some(server) => ClockReading::Read {
            before,
            after,
            server,
        },
        None => ClockReading::Failed(format!("no usable Date header ({date:?})")),
    }
}
