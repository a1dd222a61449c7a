//! [`RunState`]: whether a runner follows the log into a read model.

/// Whether a runner follows the log into a read model.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum RunState {
    /// No runner was started.
    #[default]
    Idle,
    /// A runner is following the log.
    Running,
    /// The runner was stopped.
    Stopped,
    /// PostgreSQL: a runner of this process is ready to write, but another
    /// process holds the model's writer lock and writes it. This process
    /// follows that writer's commits (so reads and `wait_for` work as with
    /// `Running`) and takes over when the lock is free.
    Standby,
    /// The runner failed; the model holds everything before `position`.
    Failed {
        /// The position it failed at (the one after the checkpoint), if the
        /// failure belongs to an event.
        position: Option<u64>,
        /// The error, as text (the runner's result has the typed error).
        error: String,
    },
}

impl RunState {
    /// Whether a runner owns the model (writing it, or standing by to).
    pub(crate) fn is_owned(&self) -> bool {
        matches!(self, RunState::Running | RunState::Standby)
    }
}
