//! Profiles: strict parsing with located errors, and backups driven by them.

use std::fs;

use crate::util::*;

fn write_profile(env: &Env, name: &str, text: &str) -> std::path::PathBuf {
    let path = env.path(&format!("profiles/{name}.toml"));
    write(&path, text.as_bytes());
    path
}

#[test]
fn a_profile_saves_its_trees_and_files_under_their_prefixes() {
    let env = Env::with_repo();
    write(&env.path("profiles/project/src/main.rs"), b"fn main() {}");
    write(&env.path("profiles/project/target/big"), b"build output");
    write(&env.path("etc/app/app.conf"), b"port = 80");
    write(&env.path("etc/app/sites/a.conf"), b"a");
    write(&env.path("etc/app/sites/b.conf"), b"b");
    let etc = env.path("etc/app");
    let profile = write_profile(
        &env,
        "web",
        &format!(
            r#"
description = "a web app"
tags = ["web"]

[[collector]]
kind = "tree"
name = "code"
path = "project"          # relative to this file
exclude = ["target"]

[[collector]]
kind = "files"
name = "config"
files = [
  "{etc}/app.conf",
  "{etc}/sites/*.conf",
  {{ path = "{etc}/absent.conf", optional = true }},
]

[retention]
keep_daily = 7
"#,
            etc = etc.display()
        ),
    );
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: profile web: skipping"),
        "{}",
        stderr(&out)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["profile"], "web");
    assert_eq!(record["tags"], serde_json::json!(["web"]));
    let listing = env.ok(&["ls", "latest"]);
    let tail = etc.display().to_string();
    let tail = tail.trim_start_matches('/');
    for expected in [
        "tree/code/src/main.rs".to_string(),
        format!("files/config/{tail}/app.conf"),
        format!("files/config/{tail}/sites/a.conf"),
        format!("files/config/{tail}/sites/b.conf"),
    ] {
        assert!(listing.contains(&expected), "{expected} missing from:\n{listing}");
    }
    assert!(!listing.contains("target"), "{listing}");
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(target.join(format!("files/config/{tail}/app.conf"))).unwrap(),
        b"port = 80"
    );
}

#[test]
fn a_missing_required_file_stops_the_backup_before_anything_is_written() {
    let env = Env::with_repo();
    let profile = write_profile(
        &env,
        "p",
        &format!(
            "[[collector]]\nkind = \"files\"\nname = \"c\"\nfiles = [\"{}\"]\n",
            env.path("nope.conf").display()
        ),
    );
    let before = du(&env.repo);
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("nope.conf does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(du(&env.repo), before);
}

#[test]
fn bad_profiles_are_refused_with_file_line_and_column() {
    let env = Env::new();
    let cases = [
        (
            "unknown-key",
            "description = \"x\"\ncolour = \"red\"\n",
            2,
            "unknown field",
        ),
        ("wrong-type", "tags = \"not a list\"\n", 1, "invalid type"),
        (
            "bad-glob",
            "[[collector]]\nkind = \"tree\"\nname = \"t\"\npath = \"/tmp\"\nexclude = [\"a[\"]\n",
            5,
            "a[",
        ),
        (
            "unknown-kind",
            "[[collector]]\nkind = \"ftp\"\nname = \"t\"\n",
            2,
            "unknown collector kind",
        ),
        (
            "misplaced-key",
            "[[collector]]\nkind = \"files\"\nname = \"t\"\npath = \"/x\"\nfiles = []\n",
            2,
            "`path` does not apply",
        ),
        (
            "bad-span",
            "description = \"x\"\n[retention]\nkeep_within = \"2 weeks\"\n",
            2,
            "[retention] keep_within",
        ),
        ("bad-count", "[retention]\nkeep_daily = -3\n", 1, "-1 for all"),
    ];
    for (name, text, line, what) in cases {
        let file = write_profile(&env, name, text);
        let out = env.run(&["profiles", "validate", file.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "{name}");
        let err = stderr(&out);
        assert!(err.contains(&format!("{name}.toml:{line}:")), "{name}: {err}");
        assert!(err.contains(what), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        // And nothing runs with it.
        let out = env.run(&["backup", "--profile", file.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "{name}");
        assert!(!env.repo.exists(), "{name}: a repository was touched");
    }
    let good = write_profile(
        &env,
        "good",
        "[[collector]]\nkind = \"tree\"\nname = \"t\"\npath = \"/tmp\"\n",
    );
    assert!(env
        .ok(&["profiles", "validate", good.to_str().unwrap()])
        .contains("ok"));
}

#[test]
fn profiles_are_found_by_name_listed_and_shown() {
    let env = Env::with_repo();
    write(&env.path("data/a"), b"a");
    let config = env.path("config");
    let text = format!(
        "description = \"dotfiles\"\n[[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"{}\"\n\
         [[collector]]\nkind = \"tree\"\nname = \"gone\"\npath = \"$CAIRN_TEST_UNSET/x\"\noptional = true\n",
        env.path("data").display()
    );
    write(&config.join("cairn/profiles/dots.toml"), text.as_bytes());
    let with_config = |args: &[&str]| {
        env.cmd()
            .env("XDG_CONFIG_HOME", &config)
            .args(args)
            .output()
            .unwrap()
    };

    let out = with_config(&["profiles", "list"]);
    assert!(
        stdout(&out).contains("dots") && stdout(&out).contains("dotfiles"),
        "{}",
        stdout(&out)
    );
    let out = with_config(&["profiles", "show", "dots", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["roots"][0]["prefix"], "tree/data");
    assert!(
        shown["notes"][0].as_str().unwrap().contains("CAIRN_TEST_UNSET"),
        "{shown}"
    );

    // Paths given beside a profile are saved with it as trees.
    write(&env.path("extra/b"), b"b");
    let out = with_config(&["backup", "--profile", "dots", env.path("extra").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listing = env.ok(&["ls", "latest"]);
    assert!(
        listing.contains("tree/data/a") && listing.contains("tree/extra/b"),
        "{listing}"
    );

    // Several profiles: one snapshot each.
    let before = env.json(&["snapshots"]).as_array().unwrap().len();
    let out = with_config(&["backup", "--profile", "dots", "--profile", "dots"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), before + 2);

    let out = with_config(&["backup", "--profile", "nosuch"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no profile of that name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn env_and_command_collectors_save_values_but_never_secrets() {
    let env = Env::with_repo();
    let profile = write_profile(
        &env,
        "go",
        r#"
[[collector]]
kind = "env"
name = "go"
include = ["CAIRNTEST_*"]
reveal = ["CAIRNTEST_PUBLIC_KEY"]

[[collector]]
kind = "command"
name = "version"
argv = ["sh", "-c", "echo go version go1.22.5 linux/amd64; echo warn >&2"]

[[collector]]
kind = "command"
name = "absent"
argv = ["cairn-test-no-such-program"]
"#,
    );
    let secret = "s3cr3t-value-that-must-not-leak";
    let out = env
        .cmd()
        .env("CAIRNTEST_GOFLAGS", "-mod=mod")
        .env("CAIRNTEST_API_TOKEN", secret)
        .env("CAIRNTEST_PUBLIC_KEY", "shown-on-purpose")
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipping command absent"),
        "{}",
        stderr(&out)
    );

    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(target.join("env/go.json")).unwrap()).unwrap();
    assert_eq!(saved["CAIRNTEST_GOFLAGS"], "-mod=mod");
    assert_eq!(saved["CAIRNTEST_PUBLIC_KEY"], "shown-on-purpose");
    assert!(saved["CAIRNTEST_API_TOKEN"]["redacted"].is_string(), "{saved}");
    assert_eq!(
        fs::read(target.join("cmd/version/stdout")).unwrap(),
        b"go version go1.22.5 linux/amd64\n"
    );
    assert_eq!(fs::read(target.join("cmd/version/stderr")).unwrap(), b"warn\n");
    assert_eq!(fs::read(target.join("cmd/version/status")).unwrap(), b"exit 0\n");

    // Roots are recorded by a stable origin, not under the current
    // directory, and a command's three outputs are listed once.
    let record = &env.json(&["snapshots"])[0];
    let origins: Vec<&str> = record["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(origins.contains(&"env:CAIRNTEST_*"), "{origins:?}");
    let listing = env.ok(&["snapshots"]);
    assert_eq!(listing.matches("echo go version").count(), 1, "{listing}");

    let plain = crate::util::repository_plaintext(&env.repo);
    let leaked = plain.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(!leaked, "the secret is in the repository");
    let shown = plain.windows(16).any(|w| w == b"shown-on-purpose");
    assert!(shown, "the search itself must find what is there");
}

#[test]
fn a_required_command_that_is_missing_stops_the_backup() {
    let env = Env::with_repo();
    let profile = write_profile(
        &env,
        "req",
        "[[collector]]\nkind = \"command\"\nname = \"dump\"\nargv = [\"cairn-test-no-such-program\"]\nrequired = true\n",
    );
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("collector dump: cairn-test-no-such-program: program not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
}

#[test]
fn facts_are_recorded_listed_and_compared_across_snapshots() {
    let env = Env::with_repo();
    let bin = env.path("bin");
    // A fake `go` program, as the go-toolchain profile would find on PATH.
    write(
        &bin.join("go"),
        b"#!/bin/sh\nif [ \"$1\" = version ]; then echo \"go version $FAKE_GO linux/amd64\"; else echo '{\"GOROOT\": \"/opt/go\"}'; fi\n",
    );
    fs::set_permissions(
        bin.join("go"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let profile = write_profile(
        &env,
        "gofacts",
        r#"
[[collector]]
kind = "command"
name = "go-version"
argv = ["go", "version"]
facts = [{ name = "go.version", regex = 'go version (\S+)' }]

[[collector]]
kind = "command"
name = "go-env"
argv = ["go", "env", "-json"]
facts = [{ name = "go.env.GOROOT", json = "GOROOT" }]

[[collector]]
kind = "env"
name = "go"
include = ["FAKE_GO"]
"#,
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for version in ["go1.21.0", "go1.22.5"] {
        let out = env
            .cmd()
            .env("PATH", &path)
            .env("FAKE_GO", version)
            .args(["backup", "--profile", profile.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let facts = env.json(&["facts", "latest"]);
    assert_eq!(facts["go.version"], "go1.22.5");
    assert_eq!(facts["go.env.GOROOT"], "/opt/go");
    assert_eq!(facts["env.FAKE_GO"], "go1.22.5");
    let table = env.ok(&["snapshots", "--fact", "go.version"]);
    assert!(
        table.contains("go.version") && table.contains("go1.21.0") && table.contains("go1.22.5"),
        "{table}"
    );

    let bad = write_profile(
        &env,
        "badfact",
        "[[collector]]\nkind = \"command\"\nname = \"x\"\nargv = [\"true\"]\nfacts = [{ name = \"f\", regex = \"(unclosed\" }]\n",
    );
    let out = env.run(&["profiles", "validate", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("badfact.toml:5:") && stderr(&out).contains("bad regex"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_builtin_profile_validates_and_runs_where_its_sources_are_absent() {
    let env = Env::with_repo();
    let home = env.path("empty-home");
    // One dotfile exists, all the rest of every profile is absent.
    write(&home.join(".gitconfig"), b"[user]\n\tname = test\n");
    let list = env.json(&["profiles", "list"]);
    let builtins: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "builtin")
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        builtins,
        ["dotfiles", "go-toolchain", "node", "python", "web-app"]
    );
    for name in &builtins {
        assert!(list.to_string().contains(name));
        let out = env
            .cmd()
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("PATH", "/usr/bin:/bin")
            .env_remove("DATABASE_URL")
            .args(["backup", "--profile", name, "--json"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["profile"], name.as_str());
    }
    // Profiles naming private keys or .env files warn: nothing is encrypted yet.
    let out = env.run(&["profiles", "show", "web-app"]);
    assert!(
        stderr(&out).contains("sensitive files (.env*"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["profiles", "show", "dotfiles"]);
    assert!(!stderr(&out).contains("sensitive"), "{}", stderr(&out));
    // Louder when a repository it writes to leaves the machine.
    let remote = write_profile(
        &env,
        "remote-keys",
        "[[collector]]\nkind = \"files\"\nname = \"app\"\nfiles = [\"/srv/app/.env\"]\n\n[[sink]]\nkind = \"s3\"\nurl = \"s3:https://127.0.0.1:9/bucket\"\n",
    );
    let out = env.run(&["profiles", "show", remote.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("WARNING: profile remote-keys saves sensitive files (/srv/app/.env) to s3:https://127.0.0.1:9/bucket, a sink not marked `encrypt = true`"),
        "{}",
        stderr(&out)
    );
    // No warning at all when the sink says it is encrypted.
    let sealed = write_profile(
        &env,
        "sealed-keys",
        "[[collector]]\nkind = \"files\"\nname = \"app\"\nfiles = [\"/srv/app/.env\"]\n\n[[sink]]\nkind = \"s3\"\nurl = \"s3:https://127.0.0.1:9/bucket\"\nencrypt = true\n",
    );
    let out = env.run(&["profiles", "show", sealed.to_str().unwrap()]);
    assert!(!stderr(&out).contains("sensitive"), "{}", stderr(&out));

    // With nothing of it present, a profile saves nothing and says so.
    fs::remove_file(home.join(".gitconfig")).unwrap();
    let out = env
        .cmd()
        .env("HOME", &home)
        .args(["backup", "--profile", "dotfiles"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("none of its sources exists"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn go_toolchain_saves_the_toolchain_its_tools_and_what_go_says() {
    let env = Env::with_repo();
    let goroot = env.path("fake-goroot");
    let gopath = env.path("fake-gopath");
    write(&goroot.join("VERSION"), b"go1.21.0");
    write(&goroot.join("src/fmt/print.go"), b"package fmt");
    write(&gopath.join("bin/gopls"), b"a tool");
    write(&env.path("config/go/env"), b"GOPROXY=direct\n");
    let bin = env.path("bin");
    let script = format!(
        "#!/bin/sh\ncase \"$1 $2\" in\n\
         'version '*) echo 'go version go1.21.0 linux/amd64' ;;\n\
         'env GOROOT') echo '{goroot}' ;;\n\
         'env GOPATH') echo '{gopath}' ;;\n\
         'env GOENV') echo '{goenv}' ;;\n\
         'env -json') echo '{{\"GOROOT\": \"{goroot}\", \"GOVERSION\": \"go1.21.0\"}}' ;;\n\
         esac\n",
        goroot = goroot.display(),
        gopath = gopath.display(),
        goenv = env.path("config/go/env").display()
    );
    write(&bin.join("go"), script.as_bytes());
    fs::set_permissions(
        bin.join("go"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    write(&env.path("project/main.go"), b"package main");
    let out = env
        .cmd()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("GOFLAGS", "-mod=mod")
        .env_remove("GOROOT")
        .args([
            "backup",
            "--profile",
            "go-toolchain",
            env.path("project").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listing = env.ok(&["ls", "latest"]);
    let goenv_tail = env.path("config/go/env").display().to_string();
    for expected in [
        "tree/goroot/src/fmt/print.go".to_string(),
        "tree/gopath-bin/gopls".to_string(),
        format!("files/go-env-file/{}", goenv_tail.trim_start_matches('/')),
        "cmd/go-version/stdout".to_string(),
        "cmd/go-env/stdout".to_string(),
        "env/go.json".to_string(),
        "tree/project/main.go".to_string(),
    ] {
        assert!(listing.contains(&expected), "{expected} missing from:\n{listing}");
    }
    let facts = env.json(&["facts", "latest"]);
    assert_eq!(facts["go.version"], "go1.21.0");
    assert_eq!(facts["go.env.GOVERSION"], "go1.21.0");
    assert_eq!(facts["env.GOFLAGS"], "-mod=mod");

    let config = env.path("userconfig");
    let out = env
        .cmd()
        .env("XDG_CONFIG_HOME", &config)
        .args(["profiles", "new", "mygo", "--from", "go-toolchain"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let copy = config.join("cairn/profiles/mygo.toml");
    assert!(
        fs::read_to_string(&copy).unwrap().contains("go env -json")
            || fs::read_to_string(&copy).unwrap().contains("\"-json\"")
    );
    assert!(env
        .ok(&["profiles", "validate", copy.to_str().unwrap()])
        .contains("ok"));
}

#[test]
fn hooks_run_around_the_backup_and_are_told_the_outcome() {
    let env = Env::with_repo();
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    let log = env.path("after.log");
    let profile = write_profile(
        &env,
        "hooked",
        &format!(
            r#"
[hooks]
before = ["echo dumped > '{data}/dump.sql'"]
after = ["echo \"$CAIRN_OUTCOME $CAIRN_SNAPSHOT $CAIRN_PROFILE\" >> '{log}'"]

[[collector]]
kind = "tree"
name = "data"
path = "{data}"
"#,
            data = data.display(),
            log = log.display()
        ),
    );
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        env.ok(&["ls", "latest"]).contains("tree/data/dump.sql"),
        "the before hook ran first"
    );
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        format!("success {id} hooked\n")
    );

    // A failing before hook stops the backup and shows why; after hooks
    // still run and hear that it failed.
    let failing = write_profile(
        &env,
        "failing",
        &format!(
            "[hooks]\nbefore = [\"echo cannot reach the database >&2; exit 4\"]\nafter = [\"echo \\\"$CAIRN_OUTCOME\\\" >> '{log}'\"]\n\
             [[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"{data}\"\n",
            data = data.display(),
            log = log.display()
        ),
    );
    let snapshots = env.json(&["snapshots"]).as_array().unwrap().len();
    let out = env.run(&["backup", "--profile", failing.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("before hook") && err.contains("exit 4") && err.contains("cannot reach the database"),
        "{err}"
    );
    assert_eq!(
        env.json(&["snapshots"]).as_array().unwrap().len(),
        snapshots,
        "nothing saved"
    );

    let broken = write_profile(
        &env,
        "broken",
        &format!(
            "[hooks]\nafter = [\"echo \\\"$CAIRN_OUTCOME: $CAIRN_ERROR\\\" >> '{log}'\"]\n\
             [[collector]]\nkind = \"command\"\nname = \"c\"\nargv = [\"cairn-test-no-such-program\"]\nrequired = true\n",
            log = log.display()
        ),
    );
    let out = env.run(&["backup", "--profile", broken.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("failed: profile broken, collector c"), "{logged}");
}

#[test]
fn tree_options_gitignore_and_marker_files() {
    let env = Env::with_repo();
    let project = env.path("project");
    write(&project.join(".gitignore"), b"*.o\nbuild/\n!keep.o\n");
    write(&project.join("src/.ignore"), b"generated.rs\n");
    write(&project.join("src/main.rs"), b"fn main() {}");
    write(&project.join("src/generated.rs"), b"// made");
    write(&project.join("main.o"), b"object");
    write(&project.join("keep.o"), b"kept on purpose");
    write(&project.join("build/out"), b"artifact");
    write(
        &project.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55",
    );
    write(&project.join("cache/blob"), b"cached");
    let profile = write_profile(
        &env,
        "opts",
        &format!(
            "[[collector]]\nkind = \"tree\"\nname = \"p\"\npath = \"{}\"\ngitignore = true\none_file_system = true\n\
             exclude_if_present = [\"CACHEDIR.TAG\"]\n",
            project.display()
        ),
    );
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listing = env.ok(&["ls", "latest"]);
    for kept in ["tree/p/src/main.rs", "tree/p/keep.o", "tree/p/.gitignore"] {
        assert!(listing.contains(kept), "{kept} missing:\n{listing}");
    }
    for left in ["main.o", "build", "generated.rs", "cache"] {
        assert!(!listing.contains(left), "{left} saved:\n{listing}");
    }
}

/// A command whose output is larger than what is kept in memory (a database
/// dump) goes through a temporary file, is saved whole, and the file is gone
/// afterwards.
#[test]
fn a_large_command_output_is_saved_through_a_temporary_file() {
    let env = Env::with_repo();
    let tmp = env.path("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let profile = write_profile(
        &env,
        "dump",
        "[[collector]]\nkind = \"command\"\nname = \"dump\"\nshell = \"yes cairn-dump-line | head -c 25000000\"\n\
         facts = [{ name = \"first\", regex = '^(\\S+)' }]\n",
    );
    let out = env
        .cmd()
        .env("TMPDIR", &tmp)
        .args(["backup", "--profile", profile.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roots = record["roots"].to_string();
    assert!(
        roots.contains("yes cairn-dump-line"),
        "the command is the recorded origin: {roots}"
    );
    assert!(!roots.contains("cairn-cmd-"), "not the temporary file: {roots}");
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary file is removed"
    );
    assert_eq!(env.json(&["facts", "latest"])["first"], "cairn-dump-line");
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let dumped = fs::read(target.join("cmd/dump/stdout")).unwrap();
    assert_eq!(dumped.len(), 25_000_000);
    assert!(dumped.starts_with(b"cairn-dump-line\ncairn-dump-line\n"));
}

#[test]
fn a_profile_sink_is_created_on_first_use() {
    let env = Env::new();
    write(&env.path("profiles/data/a"), b"a");
    let profile = write_profile(
        &env,
        "sinky",
        "[[sink]]\nkind = \"local\"\npath = \"backups\"\n[[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"data\"\n",
    );
    let out = std::process::Command::new(BIN)
        .env_remove("CAIRN_REPO")
        .env("XDG_DATA_HOME", env.path("xdg"))
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("created the profile's repository"),
        "{}",
        stderr(&out)
    );
    assert!(env.path("profiles/backups/config.json").exists());
    assert!(
        !env.path("xdg/cairn/repo").exists(),
        "the default repository is not used"
    );
}

/// A files-collector path with `..` was recorded under a prefix that kept
/// the component before the `..` (`a/../b/x` as `a/b/x`), so it restored to
/// a place it never came from.
#[test]
fn a_files_path_with_dot_dot_was_restored_elsewhere() {
    let env = Env::with_repo();
    let base = env.path("fdot");
    write(&base.join("b/x"), b"original");
    fs::create_dir_all(base.join("a")).unwrap();
    let profile = env.path("dotdot.toml");
    write(
        &profile,
        format!(
            "[[collector]]\nkind = \"files\"\nname = \"f\"\nfiles = [{{ path = \"{}/a/../b/x\" }}]\n",
            base.display()
        )
        .as_bytes(),
    );
    env.ok(&["backup", "--profile", profile.to_str().unwrap()]);
    let listing = env.ok(&["ls", "latest"]);
    let inside = base.strip_prefix("/").unwrap().display().to_string();
    assert!(listing.contains(&format!("files/f/{inside}/b/x")), "{listing}");
    assert!(!listing.contains("/a/b/x"), "{listing}");
    write(&base.join("b/x"), b"changed");
    env.ok(&["restore", "latest", "--in-place", "--no-safety-snapshot"]);
    assert_eq!(fs::read(base.join("b/x")).unwrap(), b"original");
    assert!(
        !base.join("a/b").exists(),
        "nothing is written where it never was"
    );
}

/// A hook waited out its fixed 600 s with no way to set a shorter time, and
/// a SIGTERM to cairn meanwhile did not end it.
#[test]
fn a_hook_could_not_be_given_a_timeout_nor_stopped() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let marker = env.path("grandchild-ran");
    let profile = env.path("slow.toml");
    let text = |timeout: &str| {
        format!(
            "[[collector]]\nkind = \"tree\"\nname = \"src\"\npath = \"{}\"\n[hooks]\nbefore = [\"(sleep 3; touch '{}') & sleep 30\"]\n{timeout}",
            env.path("src").display(),
            marker.display()
        )
    };
    write(&profile, text("timeout_secs = 1\n").as_bytes());
    let started = std::time::Instant::now();
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the hook was not stopped"
    );
    assert!(stderr(&out).contains("before hook"), "{}", stderr(&out));
    // Without a timeout of its own, a SIGTERM ends the hook and cairn.
    write(&profile, text("").as_bytes());
    let child = env
        .cmd()
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = wait_or_kill(child, 15, "backup with a hook after SIGTERM");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    // Everything the hook started went with it.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(!marker.exists(), "a process the hook started outlived it");
}

/// An env value was redacted only when its name looked secret:
/// `GOPROXY=https://bob:TOKEN@host` was stored in clear and printed by
/// `cairn facts`, as was a token a command printed and a fact took.
#[test]
fn a_secret_value_under_a_plain_name_was_stored_in_clear() {
    let env = Env::with_repo();
    let suffix = "0123456789abcdefghijABCDEFGHIJ012345";
    let token = format!("ghp_{suffix}");
    let token = token.as_str();
    let profile = write_profile(
        &env,
        "proxy",
        &format!(
            r#"
[[collector]]
kind = "env"
name = "go"
include = ["CAIRNTEST_GOPROXY", "CAIRNTEST_GOFLAGS"]

[[collector]]
kind = "command"
name = "whoami"
argv = ["sh", "-c", "printf 'user=me token=ghp_%s\\n' {suffix}"]
facts = [{{ name = "gh.token", regex = "token=(\\S+)" }}, {{ name = "gh.user", regex = "user=(\\S+)" }}]

[[collector]]
kind = "command"
name = "login"
argv = ["true", "glpat-abcdefghij0123456789"]
"#
        ),
    );
    let password = "pr0xy-pa55word";
    let out = env
        .cmd()
        .env(
            "CAIRNTEST_GOPROXY",
            format!("https://bob:{password}@proxy.example.com,direct"),
        )
        .env("CAIRNTEST_GOFLAGS", "-mod=mod")
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let facts = env.ok(&["facts", "latest"]);
    assert!(!facts.contains(password) && !facts.contains(token), "{facts}");
    assert!(facts.contains("gh.user") && facts.contains("me"), "{facts}");
    assert!(
        facts.contains("env.CAIRNTEST_GOFLAGS") && facts.contains("-mod=mod"),
        "{facts}"
    );
    let json = env.json(&["facts", "latest"]);
    assert!(json.to_string().contains("redacted:"), "{json}");
    let records: String = files_in(&env.repo.join("snapshots"))
        .iter()
        .map(|p| {
            let bytes = crate::util::opened(
                &env.repo,
                cairn::repo::crypto::Domain::Snapshot,
                fs::read(p).unwrap(),
            );
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert!(
        !records.contains(password) && !records.contains(token),
        "{records}"
    );
    // A token in a command's own arguments is not recorded either.
    assert!(!records.contains("glpat-abcdefghij0123456789"), "{records}");
    assert!(records.contains("true <redacted>"), "{records}");
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let saved = fs::read_to_string(target.join("env/go.json")).unwrap();
    assert!(!saved.contains(password), "{saved}");
}

/// A secret's fingerprint was keyed by the repository's id, which the
/// repository holds in clear: whoever could read it could test guesses at
/// full speed. The key now needs the user's own secret as well.
#[test]
fn a_fingerprint_was_keyed_by_the_repository_id_alone() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_repo();
    let profile = write_profile(
        &env,
        "tok",
        "[[collector]]\nkind = \"env\"\nname = \"e\"\ninclude = [\"CAIRNTEST_API_TOKEN\"]\n",
    );
    let backup = |config: &std::path::Path| {
        let out = env
            .cmd()
            .env("CAIRN_CONFIG_DIR", config)
            .env("CAIRNTEST_API_TOKEN", "hunter2")
            .args(["backup", "--profile", profile.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        env.json(&["facts", "latest"]).to_string()
    };
    let mine = env.path("config");
    let first = backup(&mine);
    let again = backup(&mine);
    let other_user = backup(&env.path("other-config"));
    let fingerprint = |facts: &str| {
        let at = facts.find("redacted:").expect("a fingerprint") + "redacted:".len();
        facts[at..at + 32].to_string()
    };
    assert_eq!(
        fingerprint(&first),
        fingerprint(&again),
        "one user's fingerprints compare"
    );
    if crate::util::encrypted() {
        // Keyed from the master key: the same for every holder of a key,
        // and no key file of the user's is needed.
        assert_eq!(fingerprint(&first), fingerprint(&other_user));
        assert!(!mine.join("fingerprint.key").exists());
    } else {
        assert_ne!(fingerprint(&first), fingerprint(&other_user));
    }
    // Not what the repository alone gives.
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config.json")).unwrap()).unwrap();
    let old_key = blake3::derive_key(
        "cairn env fingerprint v1",
        config["id"].as_str().unwrap().as_bytes(),
    );
    let guess = cairn::collect::env::fingerprint(&old_key, "CAIRNTEST_API_TOKEN", "hunter2");
    assert_ne!(fingerprint(&first), guess);
    if !crate::util::encrypted() {
        let key = mine.join("fingerprint.key");
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
