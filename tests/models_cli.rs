//! Proves the command-line side of the comparison models: `reactor-pool models` lists every
//! one, and the rule for settings a model cannot honour holds (a flag is rejected with
//! exit 2 naming the field; the same setting from a config file is ignored with a warning).

mod util;

use util::{Binary, assert_same, echo_all, run};

/// `models` prints one line per model, starting with its name, for every model.
#[test]
fn models_lists_every_model_one_line_each() {
    let out = run(&["models"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "reactor",
            "epoll",
            "epoll-et",
            "poll",
            "select",
            "thread",
            "fork",
            "blocking",
            "nonblocking",
            "sigio",
            "uring"
        ]
    );
}

/// Flags a model cannot honour are usage errors: exit 2, one line on stderr naming the
/// field, nothing on stdout (so nothing was bound).
#[test]
fn unsupported_flags_exit_2_naming_the_field() {
    for (args, field) in [
        (&["--model", "epoll", "--workers", "4"][..], "`workers`"),
        (&["--model", "fork", "--workers", "0"], "`workers`"),
        (
            &["--model", "select", "--max-connections", "5000"],
            "`max_connections`",
        ),
        (
            &["--model", "poll", "--thread-stack-size", "65536"],
            "`thread_stack_size`",
        ),
        (
            &["--model", "thread", "--thread-stack-size", "1000"],
            "`thread_stack_size`",
        ),
        (
            &["--model", "fork", "--metrics-listen", "127.0.0.1:0"],
            "`metrics_listen`",
        ),
        (
            &["--model", "epoll", "--poll-interval", "5ms"],
            "`poll_interval`",
        ),
        (
            &["--model", "nonblocking", "--poll-interval", "0"],
            "`poll_interval`",
        ),
    ] {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{all:?} printed to stdout");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{all:?}: {stderr}");
        assert!(stderr.contains(field), "{all:?}: {stderr}");
    }
}

/// A config file written for the reactor (with `workers`) still starts the poll model: the
/// setting is ignored with a warning naming it, and the server echoes.
#[test]
fn file_settings_a_model_ignores_are_warnings() {
    let dir = std::env::temp_dir().join(format!("reactor-pool-models-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reactor.toml");
    std::fs::write(
        &path,
        "workers = 3\nthread_stack_size = 65536\npoll_interval = \"2ms\"\n",
    )
    .unwrap();
    let mut server = Binary::spawn(&[
        "serve".into(),
        "--config".into(),
        path.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--model".into(),
        "poll".into(),
    ]);
    assert_same(&echo_all(server.addr, b"file"), b"file");
    let stderr = server.stop();
    assert!(
        stderr.contains("ignoring `workers`")
            && stderr.contains("ignoring `thread_stack_size`")
            && stderr.contains("ignoring `poll_interval`"),
        "no warning:\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
