//! Scheduled jobs: when a profile's backup (then its retention and prune)
//! runs, written out for the scheduler of each platform: a crontab line, a
//! systemd timer and service, a launchd agent, a Task Scheduler task. The
//! texts are pure functions of the job ([`render`]), checked against golden
//! files on every platform; installing them is small and per platform
//! ([`install`]).

pub mod install;
pub mod render;
pub mod runlog;

use std::path::PathBuf;

/// When the job runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Every hour, at this minute.
    Hourly {
        minute: u8,
    },
    Daily {
        hour: u8,
        minute: u8,
    },
    /// `weekday`: 0 Sunday ... 6 Saturday.
    Weekly {
        weekday: u8,
        hour: u8,
        minute: u8,
    },
    /// On the first of the month.
    Monthly {
        hour: u8,
        minute: u8,
    },
    /// A five-field cron expression, for cron only.
    Cron(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WhenError {
    #[error("--every {0:?}: hourly, daily, weekly, monthly, or a cron expression of five fields")]
    Every(String),
    #[error("--at {0:?}: a time such as 03:00 (or :15 with hourly)")]
    At(String),
    #[error("--on {0:?}: a weekday such as sun or monday")]
    On(String),
    #[error("--on goes with --every weekly only")]
    OnWithoutWeekly,
}

/// The days of the week, Sunday (0) first, as every scheduler names them
/// in full or by their first three letters.
pub const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// `Sun`, `Mon`... for weekday `d` (0 Sunday).
pub fn day_abbrev(d: u8) -> &'static str {
    &WEEKDAYS[usize::from(d) % 7][..3]
}

impl When {
    /// From `--every`, `--at` (default 03:00, or minute 0 hourly) and `--on`
    /// (default sun).
    pub fn parse(every: &str, at: Option<&str>, on: Option<&str>) -> Result<When, WhenError> {
        if on.is_some() && every != "weekly" {
            return Err(WhenError::OnWithoutWeekly);
        }
        let (hour, minute) = match at {
            None => (3, 0),
            Some(t) => parse_at(t).ok_or_else(|| WhenError::At(t.to_string()))?,
        };
        Ok(match every {
            "hourly" => When::Hourly { minute },
            "daily" => When::Daily { hour, minute },
            "weekly" => When::Weekly {
                weekday: match on {
                    None => 0,
                    Some(d) => weekday(d).ok_or_else(|| WhenError::On(d.to_string()))?,
                },
                hour,
                minute,
            },
            "monthly" => When::Monthly { hour, minute },
            cron if cron.split_whitespace().count() == 5 => When::Cron(cron.to_string()),
            other => return Err(WhenError::Every(other.to_string())),
        })
    }

    /// `daily at 03:00`, for the user.
    pub fn describe(&self) -> String {
        match self {
            When::Hourly { minute } => format!("hourly at minute {minute}"),
            When::Daily { hour, minute } => format!("daily at {hour:02}:{minute:02}"),
            When::Weekly {
                weekday,
                hour,
                minute,
            } => {
                format!(
                    "weekly on {} at {hour:02}:{minute:02}",
                    day_abbrev(*weekday).to_ascii_lowercase()
                )
            }
            When::Monthly { hour, minute } => format!("monthly on the 1st at {hour:02}:{minute:02}"),
            When::Cron(expr) => format!("at cron {expr:?}"),
        }
    }
}

impl When {
    /// The next time after `now` the job is due (local time); `None` for a
    /// cron expression (cron knows).
    pub fn next_after(
        &self,
        now: chrono::DateTime<chrono::Local>,
    ) -> Option<chrono::DateTime<chrono::Local>> {
        use chrono::{Datelike, Duration, TimeZone, Timelike};
        let at = |date: chrono::NaiveDate, hour: u8, minute: u8| {
            let t = date.and_hms_opt(u32::from(hour), u32::from(minute), 0)?;
            chrono::Local.from_local_datetime(&t).earliest()
        };
        let today = now.date_naive();
        // The first candidate day on or after today that is after now.
        let first = |ok: &dyn Fn(chrono::NaiveDate) -> bool, hour: u8, minute: u8| {
            (0..400)
                .filter_map(|d| today.checked_add_signed(Duration::days(d)))
                .filter(|d| ok(*d))
                .filter_map(|d| at(d, hour, minute))
                .find(|t| *t > now)
        };
        match self {
            When::Hourly { minute } => {
                let this_hour = at(today, u8::try_from(now.hour()).ok()?, *minute)?;
                Some(if this_hour > now {
                    this_hour
                } else {
                    this_hour + Duration::hours(1)
                })
            }
            When::Daily { hour, minute } => first(&|_| true, *hour, *minute),
            When::Weekly {
                weekday,
                hour,
                minute,
            } => first(
                &|d| d.weekday().num_days_from_sunday() == u32::from(*weekday),
                *hour,
                *minute,
            ),
            When::Monthly { hour, minute } => first(&|d| d.day() == 1, *hour, *minute),
            When::Cron(_) => None,
        }
    }
}

/// The scheduler this platform uses: systemd where it runs, else cron;
/// launchd on macOS; Task Scheduler on Windows.
pub fn default_backend() -> render::Backend {
    if cfg!(windows) {
        render::Backend::Windows
    } else if cfg!(target_os = "macos") {
        render::Backend::Launchd
    } else if std::path::Path::new("/run/systemd/system").is_dir() {
        render::Backend::Systemd
    } else {
        render::Backend::Cron
    }
}

/// `03:00`, `3:05`, or `:15` (the hour left at 0, for hourly).
fn parse_at(t: &str) -> Option<(u8, u8)> {
    let (h, m) = t.split_once(':')?;
    let hour: u8 = if h.is_empty() { 0 } else { h.parse().ok()? };
    let minute: u8 = m.parse().ok()?;
    (hour < 24 && minute < 60 && m.len() == 2).then_some((hour, minute))
}

/// `sun`, `Sunday`, `mon`...: at least the first three letters of a day.
fn weekday(d: &str) -> Option<u8> {
    let d = d.to_ascii_lowercase();
    let i = WEEKDAYS
        .iter()
        .position(|f| d.len() >= 3 && f.to_ascii_lowercase().starts_with(&d))?;
    u8::try_from(i).ok()
}

/// A job: which profile, when, and the command line that runs it.
#[derive(Debug, Clone)]
pub struct Job {
    pub profile: String,
    pub when: When,
    /// The cairn executable, absolute.
    pub exe: PathBuf,
    /// `--repo`, when one was given.
    pub repo: Option<String>,
}

impl Job {
    /// The job's name in every scheduler: `cairn-<profile>`.
    pub fn name(&self) -> String {
        format!("cairn-{}", self.profile)
    }

    /// What the scheduler runs: `cairn [--repo R] schedule run --profile P`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.exe.display().to_string()];
        if let Some(repo) = &self.repo {
            argv.push("--repo".into());
            argv.push(repo.clone());
        }
        argv.extend(["schedule", "run", "--profile"].map(String::from));
        argv.push(self.profile.clone());
        argv
    }
}

#[cfg(test)]
mod tests;
