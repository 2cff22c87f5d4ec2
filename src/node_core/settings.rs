//! The node's settings: the values in force, where each comes from, and the config
//! commands (`get_config`, `set_config`; api.md section 5.19).
//!
//! Precedence at start: a `peershare run` flag, else the config file, else the built-in
//! default (`node::run` resolves it). While the node runs, `set_config` edits the file (a
//! [`StorageJob::Config`] on a worker: read as it is now, edited, written atomically) and
//! then applies what can be applied at once: limits (as `set_limits` does) and the
//! completion hook; the download folder needs a restart, and a key given on the command line
//! keeps the flag's value (it wins over the file). `set_limits` saves the limits it sets
//! in the file the same way.
//!
//! Config jobs run one at a time, in the order asked ([`NodeSettings::submit`]), so two
//! edits never race on the file.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde_json::{json, Value as Json};

use super::view::fields;
use crate::api::{reply, ReplyTo};
use crate::limits::Limits;
use crate::settings::{Applies, Key, Settings, Source, Value};
use crate::storage::job::StorageJob;

/// The settings in force and the config jobs waiting (see the module docs).
#[derive(Debug)]
pub struct NodeSettings {
    /// What the command line of `peershare run` gave.
    cli: Settings,
    /// What the config file gave, for the keys this node applied from it (at start, and
    /// since by its own edits).
    applied: Settings,
    /// The download folder in force (chosen at start) and where it came from.
    download_dir: (PathBuf, Source),
    /// The completion hook in force.
    on_complete: Option<String>,
    /// Config jobs not sent yet.
    queue: VecDeque<StorageJob>,
    /// A config job is running.
    busy: bool,
}

/// What a finished `set_config` did, for its reply.
pub struct Applied {
    /// In force at once.
    pub live: bool,
    /// Why not, or what to know.
    pub note: Option<String>,
}

impl NodeSettings {
    /// The settings of a node started with `cli` flags and a config file giving `file`;
    /// `download_dir` is the folder in force and its source.
    pub fn new(cli: Settings, file: Settings, download_dir: (PathBuf, Source)) -> NodeSettings {
        NodeSettings {
            on_complete: file.on_complete.clone(),
            cli,
            applied: file,
            download_dir,
            queue: VecDeque::new(),
            busy: false,
        }
    }

    /// The completion hook in force: a command for `sh -c`, run after every completed
    /// download (never from a peer: only the owner's config sets it).
    pub fn on_complete(&self) -> Option<&str> {
        self.on_complete.as_deref()
    }

    /// Asks for a config job (`edits` to make, none to only read; `reply` the request it
    /// answers). Returns the job to send now, or `None` if one is running (it is sent when
    /// that one is [`NodeSettings::done`]).
    #[must_use]
    pub fn submit(
        &mut self,
        edits: Vec<(Key, Option<String>)>,
        reply: Option<ReplyTo>,
    ) -> Option<StorageJob> {
        self.queue.push_back(StorageJob::Config { edits, reply });
        self.next()
    }

    /// The running config job finished: the next one to send, if any.
    #[must_use]
    pub fn done(&mut self) -> Option<StorageJob> {
        self.busy = false;
        self.next()
    }

    fn next(&mut self) -> Option<StorageJob> {
        if self.busy {
            return None;
        }
        let job = self.queue.pop_front()?;
        self.busy = true;
        Some(job)
    }

    /// Limits set live (`set_limits`) are now in the file as `file` says.
    pub fn limits_saved(&mut self, file: &Settings, changes: &[(Key, Option<String>)]) {
        for (key, _) in changes {
            if let Some(i) = key.limit_index() {
                self.applied.limits[i] = file.limits[i];
            }
        }
    }

    /// `set_config` of `key` succeeded and the file now gives `file`: applies it where it
    /// can (limits into `limits`, which the caller then enforces; the hook) and says what
    /// happened.
    pub fn apply(&mut self, key: Key, file: &Settings, limits: &mut Limits) -> Applied {
        if let (Some(flag), Some(given)) = (key.flag(), self.cli.get(key)) {
            return Applied {
                live: false,
                note: Some(format!(
                    "not in force: this node runs with {flag} {} from its command line, which \
                     takes precedence over the config file",
                    given.describe()
                )),
            };
        }
        if key.applies() == Applies::AtRestart {
            let same = file.get(key) == Some(Value::Path(self.download_dir.0.clone()));
            return Applied {
                live: same,
                note: (!same).then(|| "takes effect when the node restarts".to_string()),
            };
        }
        self.applied.set(key, file.get(key));
        if let Some(i) = key.limit_index() {
            let mut changes = [None; 6];
            changes[i] = Some(file.limits[i].unwrap_or(0));
            limits.apply(&changes);
        } else {
            self.on_complete = file.on_complete.clone();
        }
        Applied {
            live: true,
            note: None,
        }
    }

    /// `get_config`'s `settings`: every key with its value in force (`limits` are the
    /// node's), its source, what the file says now (`fresh`, hand edits included) and a
    /// note where those disagree.
    pub fn rows(&self, limits: &Limits, fresh: &Settings) -> Json {
        let rows: Vec<Json> = Key::ALL
            .into_iter()
            .map(|key| {
                let (value, source) = self.value(key, limits);
                let cli = self.cli.get(key);
                let in_file = fresh.get(key);
                let note = match (&cli, key.flag()) {
                    (Some(c), Some(flag)) if source != Source::CommandLine => Some(format!(
                        "{flag} {} on the command line applies again at the next start",
                        c.describe()
                    )),
                    (Some(_), Some(flag)) if in_file.is_some() => {
                        Some(format!("the config file's value is overridden by {flag}"))
                    }
                    (None, _) if in_file != value && source != Source::SetLive => {
                        let says = in_file
                            .as_ref()
                            .map_or_else(|| "nothing".to_string(), Value::describe);
                        Some(match key.applies() {
                            Applies::AtRestart => {
                                format!("the config file says {says}: applies at the next start")
                            }
                            Applies::Live => format!(
                                "the config file says {says} (edited since it was read): \
                                 `peershare config set` or a restart applies it"
                            ),
                        })
                    }
                    _ => None,
                };
                let mut row = json!({
                    "key": key.name(),
                    "value": value.as_ref().map(Value::describe),
                    "source": source.name(),
                    "in_file": in_file.as_ref().map(Value::describe),
                    "flag": key.flag(),
                    "applies": match key.applies() {
                        Applies::Live => "live",
                        Applies::AtRestart => "at restart",
                    },
                });
                if let (Some(n), Json::Object(m)) = (note, &mut row) {
                    m.insert("note".into(), Json::from(n));
                }
                row
            })
            .collect();
        Json::from(rows)
    }

    /// The value of `key` in force and where it comes from (`None`: no hook).
    pub fn value(&self, key: Key, limits: &Limits) -> (Option<Value>, Source) {
        if let Some(i) = key.limit_index() {
            let now = limits_at(limits, i);
            let source = if self.cli.limits[i] == Some(now) {
                Source::CommandLine
            } else if self.applied.limits[i] == Some(now) {
                Source::ConfigFile
            } else if now == 0 {
                Source::Default
            } else {
                Source::SetLive
            };
            return (Some(Value::Rate(now)), source);
        }
        match key {
            Key::DownloadDir => (
                Some(Value::Path(self.download_dir.0.clone())),
                self.download_dir.1,
            ),
            _ => match &self.on_complete {
                Some(c) => (Some(Value::Command(c.clone())), Source::ConfigFile),
                None => (None, Source::Default),
            },
        }
    }
}

/// Limit `i` in the order of `Limits::FIELDS`.
fn limits_at(l: &Limits, i: usize) -> u64 {
    [
        l.up,
        l.down,
        l.transfer_up,
        l.transfer_down,
        l.peer_up,
        l.peer_down,
    ]
    .get(i)
    .copied()
    .unwrap_or(0)
}

/// The config edits of a `set_limits`: each limit it sets, as a rate the file spells
/// plainly (`5MB/s`); 0 (unlimited, the default) removes the key.
pub fn limit_edits(changes: &crate::limits::LimitChanges) -> Vec<(Key, Option<String>)> {
    changes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let key = Key::of_limit(i)?;
            let rate = (*c)?;
            Some((key, (rate > 0).then(|| crate::settings::rate_text(rate))))
        })
        .collect()
}

impl super::NodeCore {
    /// Queues a config job (sent at once unless one runs).
    pub(super) fn config_job(&mut self, edits: Vec<(Key, Option<String>)>, reply: Option<ReplyTo>) {
        if let Some(job) = self.settings.submit(edits, reply) {
            self.out.push_back(super::Output::Storage(job));
        }
    }

    /// A config job finished: the next one goes, and the request it answers (if any) gets
    /// its reply; a `set_config` is applied where it can be.
    pub(super) fn config_done(
        &mut self,
        edits: Vec<(Key, Option<String>)>,
        reply: Option<ReplyTo>,
        result: Result<(PathBuf, Settings), String>,
    ) {
        if let Some(job) = self.settings.done() {
            self.out.push_back(super::Output::Storage(job));
        }
        let bytes = match (reply, result) {
            (None, Ok((_, file))) => {
                self.settings.limits_saved(&file, &edits);
                return;
            }
            (None, Err(e)) => {
                log::error!("the limits set live are in force but not saved: {e}");
                return;
            }
            (Some(to), Err(e)) => (to, reply::error(&e)),
            (Some(to), Ok((path, file))) => (to, self.config_reply(&edits, &path, &file)),
        };
        self.out.push_back(super::Output::Reply {
            to: bytes.0,
            bytes: bytes.1,
        });
    }

    fn config_reply(
        &mut self,
        edits: &[(Key, Option<String>)],
        path: &std::path::Path,
        file: &Settings,
    ) -> Vec<u8> {
        let Some((key, value)) = edits.first() else {
            return reply::success(fields(json!({
                "file": path.display().to_string(),
                "settings": self.settings.rows(&self.limits, file),
            })));
        };
        let applied = self.settings.apply(*key, file, &mut self.limits);
        if applied.live && key.limit_index().is_some() {
            self.out.push_back(super::Output::Limits(self.limits));
        }
        let done = match value {
            Some(v) => format!("{} = {v} saved in {}", key.name(), path.display()),
            None => format!("{} removed from {}", key.name(), path.display()),
        };
        let (value, source) = self.settings.value(*key, &self.limits);
        let effect = match (&applied.note, applied.live) {
            (Some(n), _) => n.clone(),
            (None, _) => match &value {
                Some(v) => format!("in force now: {}", v.describe()),
                None => format!("in force now: the default ({})", source.name()),
            },
        };
        log::info!("config: {done}; {effect}");
        reply::success(fields(json!({
            "message": format!("{done}; {effect}"),
            "key": key.name(),
            "value": value.as_ref().map(Value::describe),
            "source": source.name(),
            "applied": applied.live,
            "file": path.display().to_string(),
        })))
    }
}
