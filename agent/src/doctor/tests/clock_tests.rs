//! The clock verdict, IMF-fixdate parsing, and the clock read from a fake
//! API server on loopback.

use std::time::{Duration, SystemTime};

use crate::doctor::readings::ClockReading;
use crate::doctor::report::Status;
use crate::doctor::verdict;

#[test]
fn clock_check_fails_beyond_the_skew_either_way() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let read = |server_offset: i64| ClockReading::Read {
        before: t,
        after: t + Duration::from_millis(20),
        server: if server_offset >= 0 {
            t + Duration::from_secs(server_offset as u64)
        } else {
            t - Duration::from_secs((-server_offset) as u64)
        },
    };
    let max = Duration::from_secs(5);
    // The server's second is truncated: 1 s behind is still in sync.
    for ok in [0, -1, 3] {
        assert_eq!(verdict::clock(&read(ok), max).status, Status::Ok, "{ok}");
    }
    let ahead = verdict::clock(&read(-30), max);
    assert_eq!(ahead.status, Status::Fail);
    assert!(
        ahead.problems[0].contains("ahead of the API server"),
        "{ahead:?}"
    );
    let behind = verdict::clock(&read(30), max);
    assert!(
        behind.problems[0].contains("behind the API server"),
        "{behind:?}"
    );
    let failed = verdict::clock(&ClockReading::Failed("refused".into()), max);
    assert_eq!(failed.status, Status::Fail);
}

#[test]
fn http_dates_parse_and_garbage_does_not() {
    use crate::doctor::clock::parse_http_date;
    let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
        784_111_777
    );
    let t = parse_http_date("Mon, 30 Nov 2026 02:05:07 GMT").unwrap();
    assert_eq!(
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
        1_796_004_307
    );
    for bad in [
        "",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad}");
    }
}

/// `t` as an IMF-fixdate (the inverse of `parse_http_date`, for the fake API).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An API server on loopback whose `Date` is `offset` away from the local
/// clock, and a kubeconfig for it.
async fn fake_api(offset: Duration, ahead: bool, dir: &std::path::Path) -> std::path::PathBuf {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let now = SystemTime::now();
            let date = http_date(if ahead { now + offset } else { now - offset });
            let body = r#"{"major":"1","minor":"32"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let path = dir.join(format!("kubeconfig-{port}"));
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, kc).unwrap();
    path
}

#[tokio::test]
async fn clock_is_read_from_the_api_servers_date_header() {
    use crate::doctor::clock::{Api, read};
    assert_eq!(
        http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    let dir = tempfile::tempdir().unwrap();
    let max = Duration::from_secs(5);
    let in_sync = fake_api(Duration::ZERO, true, dir.path()).await;
    let c = verdict::clock(&read(&Api::Kubeconfig(in_sync)).await, max);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    let behind = fake_api(Duration::from_secs(3600), false, dir.path()).await;
    let c = verdict::clock(&read(&Api::Kubeconfig(behind)).await, max);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.problems[0].contains("3600") || c.problems[0].contains("ahead"),
        "{c:?}"
    );
    assert!(matches!(read(&Api::None).await, ClockReading::NoApi));
}
