//! `restore --env-script`: a script that sets a snapshot's environment
//! variables again, for the user to run in their own shell (cairn never
//! edits the calling shell's environment). Secrets were never saved, so
//! they are left out with a comment naming them.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Sh,
    PowerShell,
    Cmd,
}

impl std::str::FromStr for Shell {
    type Err = String;

    fn from_str(s: &str) -> Result<Shell, String> {
        match s {
            "sh" | "bash" | "zsh" => Ok(Shell::Sh),
            "powershell" | "pwsh" => Ok(Shell::PowerShell),
            "cmd" => Ok(Shell::Cmd),
            other => Err(format!("unknown shell {other:?}: use sh, powershell or cmd")),
        }
    }
}

/// The script for the variables of env collector JSON objects (`env/<name>.json`).
pub fn script(shell: Shell, objects: &[(String, Vec<u8>)]) -> Result<String, String> {
    let comment = if shell == Shell::Cmd { "REM" } else { "#" };
    let mut out = String::new();
    if shell == Shell::Cmd {
        out.push_str("@echo off\n");
    }
    for (prefix, json) in objects {
        let vars: BTreeMap<String, serde_json::Value> = serde_json::from_slice(json)
            .map_err(|e| format!("{prefix} is not an environment record: {e}"))?;
        out.push_str(&format!("{comment} from {prefix}\n"));
        for (name, value) in vars {
            match value.as_str() {
                Some(v) if valid_name(&name) => out.push_str(&set(shell, &name, v)),
                Some(_) => out.push_str(&format!(
                    "{comment} {name}: not a variable name this shell can set\n"
                )),
                None => out.push_str(&format!(
                    "{comment} {name} is a secret: its value was not saved\n"
                )),
            }
        }
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn set(shell: Shell, name: &str, value: &str) -> String {
    match shell {
        Shell::Sh => format!("export {name}='{}'\n", value.replace('\'', r"'\''")),
        Shell::PowerShell => format!("$env:{name} = '{}'\n", value.replace('\'', "''")),
        // Inside `set "..."` only % is special (and a newline cannot be set).
        Shell::Cmd => format!(
            "set \"{name}={}\"\n",
            value.replace('%', "%%").replace(['\r', '\n'], " ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_values_and_leave_out_secrets() {
        let json =
            br#"{"GOFLAGS": "-mod=mod it's", "API_TOKEN": {"redacted": "ab"}, "PCT": "100%"}"#.to_vec();
        let objects = vec![("env/go.json".to_string(), json)];
        let sh = script(Shell::Sh, &objects).unwrap();
        assert!(sh.contains("export GOFLAGS='-mod=mod it'\\''s'\n"), "{sh}");
        assert!(sh.contains("# API_TOKEN is a secret"), "{sh}");
        assert!(!sh.contains("ab"), "{sh}");
        let ps = script(Shell::PowerShell, &objects).unwrap();
        assert!(ps.contains("$env:GOFLAGS = '-mod=mod it''s'\n"), "{ps}");
        let cmd = script(Shell::Cmd, &objects).unwrap();
        assert!(
            cmd.contains("set \"PCT=100%%\"\n") && cmd.contains("REM API_TOKEN"),
            "{cmd}"
        );
        assert!("fish".parse::<Shell>().is_err());
    }
}
