//! API keys: create, list, revoke, look up by hash, bootstrap service keys.
