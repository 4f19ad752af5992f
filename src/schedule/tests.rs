//! Each scheduler's text for fixed jobs, against golden files
//! (`src/schedule/golden/`, reviewed by hand; `CAIRN_BLESS=1 cargo test
//! schedule` writes them anew).

use std::path::PathBuf;

use super::render::{render, Backend, CronOnly};
use super::*;

fn job(when: When) -> Job {
    Job {
        profile: "go-toolchain".into(),
        when,
        exe: PathBuf::from("/usr/local/bin/cairn"),
        repo: Some("/srv/backup/it's here".into()),
    }
}

fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/schedule/golden")
        .join(name);
    if std::env::var_os("CAIRN_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, got).expect("bless");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "{name} differs from its golden file");
}

#[test]
fn every_scheduler_gets_its_own_text() {
    let cases = [
        ("daily", When::Daily { hour: 3, minute: 0 }),
        (
            "weekly",
            When::Weekly {
                weekday: 0,
                hour: 4,
                minute: 30,
            },
        ),
        ("hourly", When::Hourly { minute: 15 }),
        ("monthly", When::Monthly { hour: 2, minute: 5 }),
    ];
    for (when_name, when) in cases {
        let job = job(when);
        for (backend_name, backend) in [
            ("cron", Backend::Cron),
            ("systemd", Backend::Systemd),
            ("launchd", Backend::Launchd),
            ("windows", Backend::Windows),
        ] {
            for piece in render(&job, backend, false).expect("render") {
                golden(&format!("{when_name}-{backend_name}-{}", piece.name), &piece.text);
            }
        }
    }
    let system = render(&job(When::Daily { hour: 3, minute: 0 }), Backend::Windows, true).expect("render");
    golden("daily-windows-system.xml", &system[0].text);
}

#[test]
fn a_cron_expression_goes_to_cron_only() {
    let job = job(When::Cron("*/30 9-17 * * 1-5".into()));
    let cron = render(&job, Backend::Cron, false).expect("cron");
    assert!(cron[0].text.contains("\n*/30 9-17 * * 1-5 /usr/local/bin/cairn --repo '/srv/backup/it'\\''s here' schedule run --profile go-toolchain"), "{}", cron[0].text);
    assert_eq!(render(&job, Backend::Systemd, false), Err(CronOnly));
}

#[test]
fn when_parses_every_at_and_on() {
    assert_eq!(
        When::parse("daily", None, None),
        Ok(When::Daily { hour: 3, minute: 0 })
    );
    assert_eq!(
        When::parse("daily", Some("23:45"), None),
        Ok(When::Daily { hour: 23, minute: 45 })
    );
    assert_eq!(
        When::parse("hourly", Some(":15"), None),
        Ok(When::Hourly { minute: 15 })
    );
    assert_eq!(
        When::parse("weekly", Some("04:30"), Some("Friday")),
        Ok(When::Weekly {
            weekday: 5,
            hour: 4,
            minute: 30
        })
    );
    assert_eq!(
        When::parse("monthly", None, None),
        Ok(When::Monthly { hour: 3, minute: 0 })
    );
    assert_eq!(
        When::parse("0 3 * * *", None, None),
        Ok(When::Cron("0 3 * * *".into()))
    );
    assert!(matches!(
        When::parse("fortnightly", None, None),
        Err(WhenError::Every(_))
    ));
    assert!(matches!(
        When::parse("daily", Some("25:00"), None),
        Err(WhenError::At(_))
    ));
    assert!(matches!(
        When::parse("daily", Some("3:5"), None),
        Err(WhenError::At(_))
    ));
    assert!(matches!(
        When::parse("weekly", None, Some("xyz")),
        Err(WhenError::On(_))
    ));
    assert_eq!(
        When::parse("daily", None, Some("sun")),
        Err(WhenError::OnWithoutWeekly)
    );
}

#[test]
fn the_next_run_is_the_first_slot_after_now() {
    use chrono::{Local, TimeZone};
    let now = Local
        .with_ymd_and_hms(2026, 12, 1, 10, 20, 0)
        .single()
        .expect("time"); // a Tuesday
    let at = |y, mo, d, h, mi| Local.with_ymd_and_hms(y, mo, d, h, mi, 0).single();
    assert_eq!(
        When::Daily { hour: 3, minute: 0 }.next_after(now),
        at(2026, 12, 2, 3, 0)
    );
    assert_eq!(
        When::Daily { hour: 23, minute: 0 }.next_after(now),
        at(2026, 12, 1, 23, 0)
    );
    assert_eq!(
        When::Hourly { minute: 15 }.next_after(now),
        at(2026, 12, 1, 11, 15)
    );
    assert_eq!(
        When::Hourly { minute: 45 }.next_after(now),
        at(2026, 12, 1, 10, 45)
    );
    assert_eq!(
        When::Weekly {
            weekday: 0,
            hour: 3,
            minute: 0
        }
        .next_after(now),
        at(2026, 12, 6, 3, 0)
    );
    assert_eq!(
        When::Monthly { hour: 3, minute: 0 }.next_after(now),
        at(2027, 1, 1, 3, 0)
    );
    assert_eq!(When::Cron("0 3 * * *".into()).next_after(now), None);
}
