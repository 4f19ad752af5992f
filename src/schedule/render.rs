//! The text each scheduler takes for a [`Job`]: plain strings, the same on
//! every platform, so tests compare them with golden files anywhere.

use super::{Job, When};

/// Which scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cron,
    Systemd,
    Launchd,
    Windows,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "cron" => Ok(Backend::Cron),
            "systemd" => Ok(Backend::Systemd),
            "launchd" => Ok(Backend::Launchd),
            "windows" | "task-scheduler" => Ok(Backend::Windows),
            other => Err(format!("--backend {other:?}: cron, systemd, launchd or windows")),
        }
    }
}

/// One file (or crontab entry) to install: where it goes, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// A file name (`cairn-go.timer`), or `crontab` for the crontab entry.
    pub name: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a cron expression can only be installed with cron (--backend cron); use --every hourly, daily, weekly or monthly")]
pub struct CronOnly;

/// What `backend` needs installed for `job`; `system`: for the whole
/// machine (root, or SYSTEM on Windows).
pub fn render(job: &Job, backend: Backend, system: bool) -> Result<Vec<Piece>, CronOnly> {
    if matches!(job.when, When::Cron(_)) && backend != Backend::Cron {
        return Err(CronOnly);
    }
    Ok(match backend {
        Backend::Cron => vec![Piece {
            name: "crontab".into(),
            text: cron(job),
        }],
        Backend::Systemd => vec![
            Piece {
                name: format!("{}.service", job.name()),
                text: systemd_service(job),
            },
            Piece {
                name: format!("{}.timer", job.name()),
                text: systemd_timer(job),
            },
        ],
        Backend::Launchd => vec![Piece {
            name: format!("org.cairn.{}.plist", job.profile),
            text: launchd(job),
        }],
        Backend::Windows => vec![Piece {
            name: format!("{}.xml", job.name()),
            text: windows(job, system),
        }],
    })
}

/// The marker line above a job's crontab entry; install and remove find
/// the entry by it.
pub fn cron_marker(job: &Job) -> String {
    format!(
        "# {} (cairn schedule; `cairn schedule remove --profile {}` takes it away)",
        job.name(),
        job.profile
    )
}

fn cron(job: &Job) -> String {
    let fields = match &job.when {
        When::Hourly { minute } => format!("{minute} * * * *"),
        When::Daily { hour, minute } => format!("{minute} {hour} * * *"),
        When::Weekly {
            weekday,
            hour,
            minute,
        } => format!("{minute} {hour} * * {weekday}"),
        When::Monthly { hour, minute } => format!("{minute} {hour} 1 * *"),
        When::Cron(expr) => expr.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let command: Vec<String> = job.argv().iter().map(|a| sh_quote(a)).collect();
    format!(
        "{}\n{fields} {} >/dev/null 2>&1\n",
        cron_marker(job),
        command.join(" ")
    )
}

/// Single quotes for sh, `'` written as `'\''`; plain words as they are.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:+,@".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn systemd_service(job: &Job) -> String {
    let exec: Vec<String> = job.argv().iter().map(|a| systemd_quote(a)).collect();
    format!(
        "[Unit]\nDescription=cairn: back up profile {p}, then its retention and prune\n\n\
         [Service]\nType=oneshot\nExecStart={exec}\nNice=10\nIOSchedulingClass=idle\nTimeoutStartSec=12h\n",
        p = job.profile,
        exec = exec.join(" ")
    )
}

/// systemd's quoting: double quotes, with `\` and `"` escaped, and `%`
/// (a specifier) doubled.
fn systemd_quote(s: &str) -> String {
    let escaped = s.replace('%', "%%");
    if !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:+,@%".contains(c))
    {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

fn systemd_timer(job: &Job) -> String {
    let calendar = match &job.when {
        When::Hourly { minute } => format!("*-*-* *:{minute:02}:00"),
        When::Daily { hour, minute } => format!("*-*-* {hour:02}:{minute:02}:00"),
        When::Weekly {
            weekday,
            hour,
            minute,
        } => {
            format!("{} *-*-* {hour:02}:{minute:02}:00", super::day_abbrev(*weekday))
        }
        When::Monthly { hour, minute } => format!("*-*-01 {hour:02}:{minute:02}:00"),
        When::Cron(_) => String::new(),
    };
    format!(
        "[Unit]\nDescription=cairn: run {name} {when}\n\n\
         [Timer]\nOnCalendar={calendar}\n# A run missed while the machine was off runs at the next boot.\nPersistent=true\n\n\
         [Install]\nWantedBy=timers.target\n",
        name = job.name(),
        when = job.when.describe(),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn launchd(job: &Job) -> String {
    let args: String = job
        .argv()
        .iter()
        .map(|a| format!("    <string>{}</string>\n", xml_escape(a)))
        .collect();
    let key = |k: &str, v: u8| format!("    <key>{k}</key><integer>{v}</integer>\n");
    let interval = match &job.when {
        When::Hourly { minute } => key("Minute", *minute),
        When::Daily { hour, minute } => key("Hour", *hour) + &key("Minute", *minute),
        When::Weekly {
            weekday,
            hour,
            minute,
        } => key("Weekday", *weekday) + &key("Hour", *hour) + &key("Minute", *minute),
        When::Monthly { hour, minute } => key("Day", 1) + &key("Hour", *hour) + &key("Minute", *minute),
        When::Cron(_) => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n  <key>Label</key>\n  <string>org.cairn.{profile}</string>\n\
         \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         \x20 <!-- launchd runs a start missed while the machine slept when it wakes. -->\n\
         \x20 <key>StartCalendarInterval</key>\n  <dict>\n{interval}  </dict>\n\
         \x20 <key>ProcessType</key>\n  <string>Background</string>\n</dict>\n</plist>\n",
        profile = xml_escape(&job.profile),
    )
}

/// Windows' quoting for one argument of a command line.
fn windows_quote(s: &str) -> String {
    if !s.is_empty() && !s.contains([' ', '\t', '"']) {
        return s.to_string();
    }
    format!("\"{}\"", s.replace('"', "\\\""))
}

fn windows(job: &Job, system: bool) -> String {
    let argv = job.argv();
    let arguments: Vec<String> = argv.iter().skip(1).map(|a| windows_quote(a)).collect();
    let (start, schedule) = match &job.when {
        When::Hourly { minute } => (
            format!("00:{minute:02}"),
            "<ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>".to_string(),
        ),
        When::Daily { hour, minute } => (
            format!("{hour:02}:{minute:02}"),
            "<ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>".to_string(),
        ),
        When::Weekly { weekday, hour, minute } => (
            format!("{hour:02}:{minute:02}"),
            format!(
                "<ScheduleByWeek><WeeksInterval>1</WeeksInterval><DaysOfWeek><{d} /></DaysOfWeek></ScheduleByWeek>",
                d = super::WEEKDAYS[usize::from(*weekday) % 7]
            ),
        ),
        When::Monthly { hour, minute } => (
            format!("{hour:02}:{minute:02}"),
            "<ScheduleByMonth><DaysOfMonth><Day>1</Day></DaysOfMonth><Months><January /><February /><March /><April /><May /><June /><July /><August /><September /><October /><November /><December /></Months></ScheduleByMonth>".to_string(),
        ),
        When::Cron(_) => (String::new(), String::new()),
    };
    // The trigger's elements go in the schema's order: repetition first.
    let repetition = match &job.when {
        When::Hourly { .. } => {
            "<Repetition><Interval>PT1H</Interval><Duration>P1D</Duration></Repetition>\n      "
        }
        _ => "",
    };
    let principal = if system {
        "<UserId>S-1-5-18</UserId>\n      <RunLevel>HighestAvailable</RunLevel>"
    } else {
        "<LogonType>InteractiveToken</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n\
         <Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\n\
         \x20 <RegistrationInfo>\n    <Description>cairn: back up profile {profile}, then its retention and prune</Description>\n  </RegistrationInfo>\n\
         \x20 <Triggers>\n    <CalendarTrigger>\n      {repetition}<StartBoundary>2026-01-01T{start}:00</StartBoundary>\n      <Enabled>true</Enabled>\n      {schedule}\n    </CalendarTrigger>\n  </Triggers>\n\
         \x20 <Principals>\n    <Principal id=\"Author\">\n      {principal}\n    </Principal>\n  </Principals>\n\
         \x20 <Settings>\n    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>\n    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>\n    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>\n    <!-- A run missed while the machine was off runs as soon as it can. -->\n    <StartWhenAvailable>true</StartWhenAvailable>\n    <ExecutionTimeLimit>PT12H</ExecutionTimeLimit>\n  </Settings>\n\
         \x20 <Actions Context=\"Author\">\n    <Exec>\n      <Command>{command}</Command>\n      <Arguments>{arguments}</Arguments>\n      <WorkingDirectory>{workdir}</WorkingDirectory>\n    </Exec>\n  </Actions>\n</Task>\n",
        profile = xml_escape(&job.profile),
        command = xml_escape(&argv[0]),
        workdir = xml_escape(&job.exe.parent().map(|d| d.display().to_string()).unwrap_or_default()),
        arguments = xml_escape(&arguments.join(" ")),
    )
}
