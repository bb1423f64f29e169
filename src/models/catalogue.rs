//! The model catalogue: every I/O model `serve --model` accepts, listed once in
//! [`for_each_model!`](crate::for_each_model). The [`Model`] enum, its names, the dispatch to
//! each model's `run`, and the tests' `per_model!` are generated from that one list.
//!
//! Adding a model: one line in the list, its file in `src/models/` (an [`About`] named
//! `ABOUT` and `pub fn run(bound: Bound) -> io::Result<()>`), and its `mod` line in
//! `models/mod.rs` (written out so that rustfmt and readers find the file).

use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::Bound;
use crate::named::{self, Named};
use crate::sys::signal::Signo;

/// The list of models, each once: `Variant module "name"`, in the order `reactor-pool models`
/// lists them. Calls `callback! { prefix... Variant module "name", ... }`; the library builds
/// [`Model`] from it, the tests their per-model modules.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_model {
    ($($callback:ident)::+ ! { $($prefix:tt)* }) => {
        $($callback)::+! { $($prefix)*
            Reactor reactor "reactor",
            Epoll epoll "epoll",
            EpollEt epoll_et "epoll-et",
            Poll poll "poll",
            Select select "select",
            Thread thread "thread",
            Fork fork "fork",
            Blocking blocking "blocking",
            Nonblocking nonblocking "nonblocking",
            Sigio sigio "sigio",
            Uring uring "uring",
        }
    };
}

/// What the catalogue knows of a model besides its name; each model file defines its own as
/// `ABOUT`. Settings a model cannot honour are refused (flags) or ignored with a warning (file)
/// by the config's model-fit check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct About {
    /// One line on how the model works and where it stops scaling (`reactor-pool models`).
    pub(crate) describe: &'static str,
    /// Runs `workers` worker threads (and counts in one stats block per worker).
    pub(crate) uses_workers: bool,
    /// Starts a thread per connection, sized by `thread_stack_size`.
    pub(crate) uses_thread_stack_size: bool,
    /// Polls without a readiness API, pausing up to `poll_interval` after idle rounds.
    pub(crate) uses_poll_interval: bool,
    /// Can serve the metrics endpoint (which needs a thread of its own).
    pub(crate) serves_metrics: bool,
    /// Most connections it can serve at once, whatever `max_connections` says.
    pub(crate) connection_ceiling: Option<usize>,
    /// Serves one connection at a time: every other one waits in the backlog until the one
    /// in service closes (`blocking`).
    pub(crate) one_at_a_time: bool,
    /// Signals it handles itself, installed at bind time; the caller then starts no signal
    /// thread. Empty for every model but `fork`.
    pub(crate) signals: &'static [Signo],
    /// Checks at bind time, before `listening on` is reported, that the kernel supports the
    /// model (`uring`); `None` for models that run everywhere Linux does.
    pub(crate) probe: Option<fn() -> io::Result<()>>,
}

impl About {
    /// A model with no special needs or limits, described by `describe`.
    pub(crate) const fn new(describe: &'static str) -> About {
        About {
            describe,
            uses_workers: false,
            uses_thread_stack_size: false,
            uses_poll_interval: false,
            serves_metrics: true,
            connection_ceiling: None,
            one_at_a_time: false,
            signals: &[],
            probe: None,
        }
    }
}

macro_rules! define_models {
    ($($variant:ident $module:ident $name:literal,)*) => {
        /// The I/O model that serves connections, one per file of `crate::models`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Model {
            $(
                #[doc = concat!("`", $name, "`: see `src/models/", stringify!($module), ".rs`.")]
                $variant,
            )*
        }

        impl Model {
            /// Every model, in the order `reactor-pool models` lists them.
            pub const ALL: &'static [Model] = &[$(Model::$variant),*];

            /// The name used on the command line and in the config file.
            pub fn name(self) -> &'static str {
                match self {
                    $(Model::$variant => $name,)*
                }
            }

            /// What the model's file says about it.
            pub(crate) fn about(self) -> &'static About {
                match self {
                    $(Model::$variant => &super::$module::ABOUT,)*
                }
            }
        }

        /// Serves `bound` with the model it was bound for, until shutdown and drain.
        pub(crate) fn run(bound: Bound) -> io::Result<()> {
            match bound.settings.model {
                $(Model::$variant => super::$module::run(bound),)*
            }
        }
    };
}

for_each_model!(define_models! {});

// Written out rather than derived: the variants come from the list, and the default is the
// reactor whatever the list's order.
#[allow(clippy::derivable_impls)]
impl Default for Model {
    fn default() -> Self {
        Model::Reactor
    }
}

impl Model {
    /// One line on how the model works and where it stops scaling.
    pub fn describe(self) -> &'static str {
        self.about().describe
    }

    /// Whether the model runs `workers` worker threads.
    pub(crate) fn uses_workers(self) -> bool {
        self.about().uses_workers
    }

    /// Whether the model starts a thread per connection (sized by `thread_stack_size`).
    pub(crate) fn uses_thread_stack_size(self) -> bool {
        self.about().uses_thread_stack_size
    }

    /// Whether the model polls without a readiness API, pausing up to `poll_interval`.
    pub(crate) fn uses_poll_interval(self) -> bool {
        self.about().uses_poll_interval
    }

    /// Whether the model can serve the metrics endpoint (it needs a thread of its own).
    pub(crate) fn serves_metrics(self) -> bool {
        self.about().serves_metrics
    }

    /// Whether the model serves one connection at a time (the others wait in the backlog),
    /// so a load that keeps several open at once cannot be served.
    pub fn serves_one_at_a_time(self) -> bool {
        self.about().one_at_a_time
    }

    /// Most connections the model can serve at once, whatever `max_connections` says.
    pub fn connection_ceiling(self) -> Option<usize> {
        self.about().connection_ceiling
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Named for Model {
    const WHAT: &'static str = "model";

    fn all() -> &'static [Model] {
        Model::ALL
    }

    fn name_of(self) -> &'static str {
        self.name()
    }
}

impl FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named::parse(s)
    }
}

impl<'de> Deserialize<'de> for Model {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for (i, &model) in Model::ALL.iter().enumerate() {
            assert_eq!(model.name().parse::<Model>(), Ok(model));
            assert!(!model.describe().is_empty() && !model.describe().contains('\n'));
            assert!(Model::ALL[..i].iter().all(|m| m.name() != model.name()));
        }
        assert_eq!(Model::default(), Model::Reactor);
        let e = "fibers".parse::<Model>().unwrap_err();
        assert!(e.contains("reactor") && e.contains("blocking"), "{e}");
    }
}
