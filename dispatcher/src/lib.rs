//! The long-lived process that runs queued executions in sandboxes.
