//! The dispatcher's own settings.
